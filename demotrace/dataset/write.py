"""Writing a dataset folder: every export, the viewer, the report and summary.json, from the sessions'
outputs merged in session order (images/ is written per session, by ``images.ImageWriter``)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from demotrace.dataset.describe import ChatDescriber, describe_episodes
from demotrace.dataset.episodes import Episode
from demotrace.dataset.export.adp import ADP_DIR, ADP_FILE
from demotrace.dataset.export.agentnet import ImageRef, Trajectory, episode_to_trajectory
from demotrace.dataset.export.parquet import PARQUET_DIR
from demotrace.dataset.export.viewer import render_viewer
from demotrace.dataset.export.wds import WEBDATASET_DIR
from demotrace.dataset.options import ALL_FORMATS, BuildOptions, ExportFormat
from demotrace.dataset.pieces import SessionPieces, assemble_pieces, write_session_pieces
from demotrace.dataset.privacy import Scrubber
from demotrace.dataset.progress import BuildProgress, ProgressCallback, no_progress
from demotrace.dataset.quality import DROP_REASONS, QualityCounts
from demotrace.dataset.report import REPORT_FILE, ReportFigures, count_redactions, render_report, steps_by_app
from demotrace.model import Frame

TRAJECTORIES_FILE = "trajectories.jsonl"
SUMMARY_FILE = "summary.json"
VIEWER_FILE = "index.html"
# Summary fields holding paths: absolute in the returned value, relative to the folder in summary.json.
_PATH_FIELDS = (
    "out_dir",
    "trajectories_path",
    "images_dir",
    "summary_path",
    "viewer_path",
    "report_path",
    "parquet_dir",
    "webdataset_dir",
    "adp_path",
    "pseudonym_key_path",
)


class BuildSummary(msgspec.Struct):
    sessions: int
    sessions_without_header: int  # skipped: without the header, screen size and timing are unknown
    episodes: int  # kept ones (after the quality filter)
    steps: int
    actions_by_kind: dict[str, int]
    frames_written: int
    steps_without_frame: int
    image_bytes: int
    jsonl_bytes: int
    total_bytes: int  # images + JSONL + viewer (every output, per file kind: bytes_by_output)
    # Paths as text so the summary encodes as it is (msgspec does not encode Path); "" when not written.
    out_dir: str
    trajectories_path: str
    images_dir: str
    summary_path: str
    viewer_path: str
    report_path: str = ""
    parquet_dir: str = ""
    webdataset_dir: str = ""
    adp_path: str = ""
    pseudonym_key_path: str = ""
    formats: list[str] = []
    episodes_dropped: dict[str, int] = {}  # by quality reason
    instructions_by_source: dict[str, int] = {}
    describer_failures: int = 0  # episodes whose model description failed (deterministic one kept)
    redactions_by_kind: dict[str, int] = {}
    bytes_by_output: dict[str, int] = {}
    parquet_shards: int = 0
    webdataset_shards: int = 0


@dataclass(frozen=True)
class SessionOutput:
    """What one session contributes to a dataset; merged in session order by ``write_dataset``."""

    episodes: list[Episode]  # kept ones, scrubbed and pseudonymous (frame ids still raw)
    quality: QualityCounts
    images: dict[str, ImageRef | None]  # raw frame id → where its frame was written (None: not found)
    image_files: dict[str, int]  # file name in images/ → bytes
    pieces: SessionPieces | None = None  # its share of the exports, when its worker wrote it


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _remove_unrequested(out_dir: Path, formats: Collection[ExportFormat]) -> None:
    """Our own outputs of formats not built this time: left there, they would pass for this build's."""
    if "agentnet" not in formats:
        (out_dir / TRAJECTORIES_FILE).unlink(missing_ok=True)
    if "adp" not in formats:
        (out_dir / ADP_DIR / ADP_FILE).unlink(missing_ok=True)
    if "parquet" not in formats:
        for shard in (out_dir / PARQUET_DIR).glob("train-*.parquet"):
            shard.unlink()
    if "webdataset" not in formats:
        for shard in (out_dir / WEBDATASET_DIR).glob("shard-*.tar"):
            shard.unlink()


def _remove_stale_images(images_dir: Path, current: Collection[str]) -> None:
    """A previous build's frames that this build did not write: left there, a rebuild after a deletion
    would still ship the deleted person's screens."""
    for path in images_dir.iterdir():
        if path.is_file() and path.name not in current:
            path.unlink()


def _merged_quality(counts: Iterable[QualityCounts]) -> QualityCounts:
    kept = 0
    dropped: Counter[str] = Counter()
    for count in counts:
        kept += count.kept
        dropped.update(count.dropped)
    return QualityCounts(kept=kept, dropped={reason: dropped[reason] for reason in DROP_REASONS})


def write_dataset(
    options: BuildOptions,
    outputs: Sequence[SessionOutput],
    sessions: int,
    sessions_without_header: int,
    scrubber: Scrubber,
    load_frame: Callable[[str], Frame | None],
    *,
    progress: ProgressCallback = no_progress,
) -> BuildSummary:
    """Describe (if asked), turn the sessions' episodes, in the order given, into trajectories and write
    every export, the viewer, the report and the summary; ``progress`` hears each output start and end."""
    out_dir, formats = options.out_dir, options.formats
    images_dir = options.images_dir
    kept = [episode for output in outputs for episode in output.episodes]
    quality_counts = _merged_quality(output.quality for output in outputs)
    images: dict[str, ImageRef | None] = {}
    image_files: dict[str, int] = {}  # a frame shared by two sessions is one file, counted once
    for output in outputs:
        images.update(output.images)
        image_files.update(output.image_files)
    frames_written = len(image_files)
    image_bytes = sum(image_files.values())
    _remove_stale_images(images_dir, image_files)

    describer_failures = 0
    if options.describer is not None:
        with ChatDescriber(options.describer) as chat:
            kept = describe_episodes(kept, chat, scrubber, load_frame)
            describer_failures = chat.failures
    trajectories = [episode_to_trajectory(episode, images.get) for episode in kept]
    pieces = _pieces(options, outputs, trajectories)

    _remove_unrequested(out_dir, formats)
    bytes_by_output: dict[str, int] = {}
    trajectories_path = out_dir / TRAJECTORIES_FILE
    jsonl = b""
    if "agentnet" in formats:
        progress(BuildProgress(TRAJECTORIES_FILE, 0, 1))
        jsonl = b"".join(piece.agentnet for piece in pieces)
        _write_atomically(trajectories_path, jsonl)
        bytes_by_output["trajectories.jsonl"] = len(jsonl)
    adp_path = out_dir / ADP_DIR / ADP_FILE
    if "adp" in formats:
        progress(BuildProgress("adp", 0, 1))
        adp = b"".join(piece.adp for piece in pieces)
        _write_atomically(adp_path, adp)
        bytes_by_output["adp"] = len(adp)
    progress(BuildProgress("parquet and webdataset", 0, 1))
    parquet_shards, webdataset_shards = assemble_pieces(options, pieces)
    if "parquet" in formats:
        bytes_by_output["parquet"] = sum(shard.stat().st_size for shard in parquet_shards)
    if "webdataset" in formats:
        bytes_by_output["webdataset"] = sum(shard.stat().st_size for shard in webdataset_shards)

    progress(BuildProgress(VIEWER_FILE, 0, 1))
    viewer = render_viewer(trajectories).encode()
    viewer_path = out_dir / VIEWER_FILE
    _write_atomically(viewer_path, viewer)
    bytes_by_output["images"] = image_bytes
    bytes_by_output["index.html"] = len(viewer)

    steps = [step for trajectory in trajectories for step in trajectory.traj]
    actions_by_kind: dict[str, int] = dict(sorted(Counter(step.value.action for step in steps).items()))
    instructions_by_source: dict[str, int] = dict(
        sorted(Counter(t.instruction_source for t in trajectories).items())
    )
    redactions = count_redactions(trajectories)
    steps_without_frame = sum(1 for step in steps if step.image is None)
    progress(BuildProgress(REPORT_FILE, 0, 1))
    report = render_report(
        ReportFigures(
            episodes=len(trajectories),
            steps=len(steps),
            actions_by_kind=actions_by_kind,
            episode_lengths=[len(trajectory.traj) for trajectory in trajectories],
            steps_by_app=steps_by_app(trajectories),
            redactions_by_kind=redactions,
            quality={"kept": quality_counts.kept, **quality_counts.dropped},
            instructions_by_source=instructions_by_source,
            frames_written=frames_written,
            steps_without_frame=steps_without_frame,
            bytes_by_output=dict(sorted(bytes_by_output.items())),
        )
    ).encode()
    report_path = out_dir / REPORT_FILE
    _write_atomically(report_path, report)

    summary = BuildSummary(
        sessions=sessions,
        sessions_without_header=sessions_without_header,
        episodes=len(trajectories),
        steps=len(steps),
        actions_by_kind=actions_by_kind,
        frames_written=frames_written,
        steps_without_frame=steps_without_frame,
        image_bytes=image_bytes,
        jsonl_bytes=len(jsonl),
        total_bytes=image_bytes + len(jsonl) + len(viewer),
        out_dir=str(out_dir),
        trajectories_path=str(trajectories_path) if "agentnet" in formats else "",
        images_dir=str(images_dir),
        summary_path=str(out_dir / SUMMARY_FILE),
        viewer_path=str(viewer_path),
        report_path=str(report_path),
        parquet_dir=str(out_dir / PARQUET_DIR) if "parquet" in formats else "",
        webdataset_dir=str(out_dir / WEBDATASET_DIR) if "webdataset" in formats else "",
        adp_path=str(adp_path) if "adp" in formats else "",
        pseudonym_key_path=str(options.key_path) if options.key_path is not None else "",
        formats=[name for name in ALL_FORMATS if name in formats],
        episodes_dropped={reason: quality_counts.dropped[reason] for reason in DROP_REASONS},
        instructions_by_source=instructions_by_source,
        describer_failures=describer_failures,
        redactions_by_kind=redactions,
        bytes_by_output=dict(sorted({**bytes_by_output, "report.html": len(report)}.items())),
        parquet_shards=len(parquet_shards),
        webdataset_shards=len(webdataset_shards),
    )
    _write_atomically(out_dir / SUMMARY_FILE, summary_json(summary))
    progress(BuildProgress("done", 1, 1, len(steps), frames_written))
    return summary


def _pieces(
    options: BuildOptions, outputs: Sequence[SessionOutput], trajectories: Sequence[Trajectory]
) -> list[SessionPieces]:
    """Each session's export pieces: as its worker wrote them, or written here when the worker could
    not (the describer rewrites instructions across sessions, in order, after the workers are done)."""
    if options.describer is None and all(output.pieces is not None for output in outputs):
        return [output.pieces for output in outputs if output.pieces is not None]
    pieces: list[SessionPieces] = []
    start = 0
    for number, output in enumerate(outputs):
        end = start + len(output.episodes)
        pieces.append(write_session_pieces(trajectories[start:end], options, f"driver-{number:08d}"))
        start = end
    return pieces


def summary_json(summary: BuildSummary) -> bytes:
    """The figures of a build, with paths relative to the dataset folder so the folder can move."""
    figures = msgspec.structs.asdict(summary)
    for key in _PATH_FIELDS:
        if figures[key]:
            figures[key] = os.path.relpath(figures[key], summary.out_dir)
    return msgspec.json.format(msgspec.json.encode(figures), indent=2) + b"\n"
