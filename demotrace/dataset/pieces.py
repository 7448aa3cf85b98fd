"""Export pieces: each session's share of every export, written by the worker that built the session,
so the driver only concatenates finished pieces (JSONL lines, Parquet rows, tar members) in the
dataset's order instead of encoding every export itself.

A piece file lives in OUT/.pieces/ until the shards are assembled (``write.write_dataset``), then goes.
Every engine writes pieces the same way and assembles them with the same pure plan
(``export/shards.plan_shards``), so one process, a pool and Ray write the same bytes.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from demotrace.dataset.export.adp import adp_jsonl
from demotrace.dataset.export.agentnet import Trajectory
from demotrace.dataset.export.parquet import PARQUET_DIR, assemble_parquet_shards, write_parquet_piece
from demotrace.dataset.export.shards import plan_shards
from demotrace.dataset.export.steps import step_records
from demotrace.dataset.export.wds import WEBDATASET_DIR, assemble_webdataset_shards, write_webdataset_piece
from demotrace.dataset.options import BuildOptions

PIECES_DIR = ".pieces"


@dataclass(frozen=True)
class SessionPieces:
    """One session's pieces: JSONL bytes in memory (small), Parquet rows and tar members in files."""

    agentnet: bytes = b""
    adp: bytes = b""
    parquet: str | None = None  # file name in OUT/.pieces/
    image_sizes: list[int] = field(default_factory=list)  # per Parquet row
    webdataset: str | None = None
    member_lengths: list[int] = field(default_factory=list)  # per sample: bytes in the piece
    sample_sizes: list[int] = field(default_factory=list)  # per sample: bytes of its values


def piece_stem(session_id: str) -> str:
    """A piece's file name for a session: no raw id on disk, even for the length of a build."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def write_session_pieces(
    trajectories: Sequence[Trajectory], options: BuildOptions, stem: str
) -> SessionPieces:
    """The pieces of these trajectories (one session's, in order) for the build's formats."""
    out_dir, formats = options.out_dir, options.formats
    folder = out_dir / PIECES_DIR
    folder.mkdir(parents=True, exist_ok=True)

    def read_image(relative: str) -> bytes | None:
        path = out_dir / relative
        return path.read_bytes() if path.is_file() else None

    agentnet = adp = b""
    if "agentnet" in formats:
        encoder = msgspec.json.Encoder()
        agentnet = b"".join(encoder.encode(trajectory) + b"\n" for trajectory in trajectories)
    if "adp" in formats:
        adp = adp_jsonl(trajectories)
    parquet: str | None = None
    image_sizes: list[int] = []
    if "parquet" in formats:
        parquet = f"{stem}.arrow"
        image_sizes = write_parquet_piece(step_records(trajectories), read_image, folder / parquet)
    webdataset: str | None = None
    lengths: list[int] = []
    sizes: list[int] = []
    if "webdataset" in formats:
        webdataset = f"{stem}.tar-members"
        lengths, sizes = write_webdataset_piece(step_records(trajectories), read_image, folder / webdataset)
    return SessionPieces(agentnet, adp, parquet, image_sizes, webdataset, lengths, sizes)


def assemble_pieces(options: BuildOptions, pieces: Sequence[SessionPieces]) -> tuple[list[Path], list[Path]]:
    """The Parquet and WebDataset shards of the build, from the sessions' pieces in dataset order;
    the pieces are removed afterwards."""
    folder = options.out_dir / PIECES_DIR
    limits = options.shard_limits
    parquet: list[Path] = []
    webdataset: list[Path] = []
    if "parquet" in options.formats:
        plan = plan_shards([piece.image_sizes for piece in pieces], limits.max_steps, limits.max_bytes)
        files = [folder / piece.parquet for piece in pieces if piece.parquet is not None]
        parquet = assemble_parquet_shards(files, plan, options.out_dir / PARQUET_DIR)
    if "webdataset" in options.formats:
        plan = plan_shards([piece.sample_sizes for piece in pieces], limits.max_steps, limits.max_bytes)
        members = [
            (folder / piece.webdataset, piece.member_lengths)
            for piece in pieces
            if piece.webdataset is not None
        ]
        webdataset = assemble_webdataset_shards(members, plan, options.out_dir / WEBDATASET_DIR)
    shutil.rmtree(folder, ignore_errors=True)
    return parquet, webdataset
