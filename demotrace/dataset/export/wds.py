"""Step records → WebDataset tar shards (OUT/webdataset/shard-000000.tar …), one sample per step.

A sample is ``<key>.json`` (the step record: step and episode fields) and, when the step has a frame,
``<key>.<ext>`` with the image in its stored encoding (png, webp …), so ``.decode("pil")`` reads it.
The key is "<task_id>_<step index>": ids are hex pseudonyms, so it holds no dot (WebDataset splits a
member name at its first dot). Tar members are owned by "demotrace" with a fixed time, so shards leak
neither the builder's account nor when the build ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import msgspec
import webdataset  # type: ignore[import-untyped]

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


def write_webdataset_shards(
    records: Iterable[StepRecord],
    read_image: Callable[[str], bytes | None],
    directory: Path,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Path]:
    """Write the shards and return their paths (with no records, one empty shard)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("shard-*.tar"):  # a previous build's shards would mix into a glob
        old.unlink()
    written: list[Path] = []
    with webdataset.ShardWriter(
        str(directory / SHARD_PATTERN),
        maxcount=max_samples,
        maxsize=max_bytes,
        post=lambda name: written.append(Path(name)),
        verbose=0,
        encoder=False,  # every value is bytes already
        user=_OWNER,
        group=_OWNER,
        mtime=0.0,
    ) as writer:
        for record in records:
            image = read_image(record.image_path) if record.image_path is not None else None
            writer.write(sample_of(record, image))
    return written
