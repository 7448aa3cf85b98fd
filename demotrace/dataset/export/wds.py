"""Step records → WebDataset tar shards (OUT/webdataset/shard-000000.tar …), one sample per step.

A sample is ``<key>.json`` (the step record: step and episode fields) and, when the step has a frame,
``<key>.<ext>`` with the image in its stored encoding (png, webp …), so ``.decode("pil")`` reads it.
The key is "<task_id>_<step index>": ids are hex pseudonyms, so it holds no dot (WebDataset splits a
member name at its first dot). Tar members are owned by "demotrace" with a fixed time, so shards leak
neither the builder's account nor when the build ran.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import msgspec

from demotrace.dataset.export.shards import Shard
from demotrace.dataset.export.steps import StepRecord

WEBDATASET_DIR = "webdataset"
SHARD_PATTERN = "shard-%06d.tar"
DEFAULT_MAX_SAMPLES = 5000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_OWNER = "demotrace"


def sample_key(record: StepRecord) -> str:
    return f"{record.task_id}_{record.step_index:05d}".replace(".", "_")


def sample_of(record: StepRecord, image: bytes | None) -> dict[str, str | bytes]:
    sample: dict[str, str | bytes] = {"__key__": sample_key(record), "json": msgspec.json.encode(record)}
    if image is not None and record.image_path is not None:
        extension = PurePosixPath(record.image_path).suffix.lstrip(".").lower() or "bin"
        sample[extension] = image
    return sample


def sample_members(sample: dict[str, str | bytes]) -> tuple[bytes, int]:
    """A sample's tar members (a header and the value padded to 512-byte blocks each, values in key
    order, as ``webdataset.TarWriter`` writes them) and the bytes of its values."""
    key = str(sample["__key__"])
    members: list[bytes] = []
    size = 0
    for name in sorted(name for name in sample if name != "__key__"):
        value = sample[name]
        data = value.encode() if isinstance(value, str) else value
        info = tarfile.TarInfo(f"{key}.{name}")
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = _OWNER
        members += [info.tobuf(tarfile.DEFAULT_FORMAT, tarfile.ENCODING, "surrogateescape"), data]
        members.append(tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))
        size += len(data)
    return b"".join(members), size


def write_webdataset_piece(
    records: Iterable[StepRecord], read_image: Callable[[str], bytes | None], path: Path
) -> tuple[list[int], list[int]]:
    """One session's samples as tar members in a file (the piece a worker writes); returns each
    sample's member bytes (where it is in the piece) and value bytes (what a shard's size counts)."""
    lengths: list[int] = []
    sizes: list[int] = []
    with path.open("wb") as piece:
        for record in records:
            image = read_image(record.image_path) if record.image_path is not None else None
            members, size = sample_members(sample_of(record, image))
            piece.write(members)
            lengths.append(len(members))
            sizes.append(size)
    return lengths, sizes


def assemble_webdataset_shards(
    pieces: Sequence[tuple[Path, Sequence[int]]], shards: Sequence[Shard], directory: Path
) -> list[Path]:
    """Write the planned shards (``shards.plan_shards``) by copying the pieces' members (``pieces``:
    each piece's path and its samples' member bytes) and ending each shard as tar ends an archive."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("shard-*.tar"):  # a previous build's shards would mix into a glob
        old.unlink()
    written: list[Path] = []
    for number, shard in enumerate(shards):
        path = directory / (SHARD_PATTERN % number)
        offset = 0
        with path.open("wb") as out:
            for index, start, stop in shard:
                piece, lengths = pieces[index]
                with piece.open("rb") as source:
                    source.seek(sum(lengths[:start]))
                    _copy(source, out, sum(lengths[start:stop]))
                offset += sum(lengths[start:stop])
            end = offset + 2 * tarfile.BLOCKSIZE  # two zero blocks, then zeros to a whole record
            out.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE + -end % tarfile.RECORDSIZE))
        written.append(path)
    return written


def _copy(source: BinaryIO, target: BinaryIO, size: int) -> None:
    while size > 0:
        chunk = source.read(min(size, 1 << 20))
        if not chunk:
            raise OSError(f"{source.name} ends early")
        target.write(chunk)
        size -= len(chunk)
