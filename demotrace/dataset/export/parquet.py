"""Step records → Parquet shards a Hugging Face ``datasets`` loader reads with images embedded.

OUT/parquet/train-00000-of-0000N.parquet: one row per step. The ``image`` column is the ``datasets``
Image struct {bytes, path}; the schema carries the ``datasets`` features in its "huggingface" metadata,
so ``load_dataset("parquet", ...)`` decodes it as an image without being told. ``action_detail`` is a
JSON string: its list of keys would need a sequence feature whose spelling changed across ``datasets``
versions, and a string reads the same everywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from demotrace.dataset.export.steps import StepRecord

PARQUET_DIR = "parquet"
SHARD_PREFIX = "train-"
DEFAULT_MAX_ROWS = 5000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# Small row groups: a reader streaming a shard holds one group's images in memory at a time.
ROW_GROUP_ROWS = 100

_REGION = pa.struct([(name, pa.int64()) for name in ("left", "top", "width", "height")])
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # field order as ``datasets`` has it
SCHEMA_FIELDS: list[tuple[str, Any]] = [
    ("task_id", pa.string()),
    ("session_id", pa.string()),
    ("device_id", pa.string()),
    ("instruction", pa.string()),
    ("instruction_source", pa.string()),
    ("end_reason", pa.string()),
    ("platform", pa.string()),
    ("screen_width", pa.int64()),
    ("screen_height", pa.int64()),
    ("episode_start_wall", pa.float64()),
    ("episode_end_wall", pa.float64()),
    ("episode_steps", pa.int64()),
    ("step_index", pa.int64()),
    ("image", _IMAGE),
    ("image_region", _REGION),
    ("code", pa.string()),
    ("action", pa.string()),
    ("action_detail", pa.string()),
    ("app", pa.string()),
    ("window", pa.string()),
    ("ts", pa.float64()),
]


def _value_feature(arrow_type: Any) -> dict[str, str]:
    dtype = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "float64"}[arrow_type]
    return {"dtype": dtype, "_type": "Value"}


def hf_features() -> dict[str, Any]:
    """The ``datasets`` Features of the schema, as ``Features.to_dict()`` spells them."""
    features: dict[str, Any] = {}
    for name, arrow_type in SCHEMA_FIELDS:
        if arrow_type == _IMAGE:
            features[name] = {"_type": "Image"}
        elif arrow_type == _REGION:
            features[name] = {field.name: _value_feature(field.type) for field in arrow_type}
        else:
            features[name] = _value_feature(arrow_type)
    return features


def parquet_schema() -> pa.Schema:
    metadata = {"huggingface": json.dumps({"info": {"features": hf_features()}})}
    return pa.schema(SCHEMA_FIELDS, metadata=metadata)


def _row(record: StepRecord, image: bytes | None) -> dict[str, Any]:
    region = msgspec.structs.asdict(record.image_region) if record.image_region is not None else None
    return {
        "task_id": record.task_id,
        "session_id": record.session_id,
        "device_id": record.device_id,
        "instruction": record.instruction,
        "instruction_source": record.instruction_source,
        "end_reason": record.end_reason,
        "platform": record.platform,
        "screen_width": record.screen_width,
        "screen_height": record.screen_height,
        "episode_start_wall": record.episode_start_wall,
        "episode_end_wall": record.episode_end_wall,
        "episode_steps": record.episode_steps,
        "step_index": record.step_index,
        "image": {"bytes": image, "path": record.image_path} if image is not None else None,
        "image_region": region,
        "code": record.code,
        "action": record.action,
        "action_detail": msgspec.json.encode(record.action_detail).decode(),
        "app": record.app,
        "window": record.window,
        "ts": record.ts,
    }


def shard_name(index: int, count: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}-of-{count:05d}.parquet"


def _remove_old_shards(directory: Path) -> None:
    # A previous build's shards have another "-of-N": left behind, a glob would read both builds.
    for old in directory.glob(f"{SHARD_PREFIX}*.parquet"):
        old.unlink()


def write_parquet_shards(
    records: Iterable[StepRecord],
    read_image: Callable[[str], bytes | None],
    directory: Path,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Path]:
    """Write the shards (a new shard once one reaches ``max_rows`` rows or ``max_bytes`` of images) and
    return their paths; with no records, one empty shard, so the split still loads.

    Rows are streamed out one row group (``ROW_GROUP_ROWS``) at a time: memory holds one group's images,
    not a shard's (a shard may hold 256 MiB of them)."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = parquet_schema()
    partials: list[Path] = []
    writer: pq.ParquetWriter | None = None
    group: list[dict[str, Any]] = []
    shard_rows = shard_bytes = 0

    def write_group() -> None:
        nonlocal writer
        if writer is None:
            partials.append(directory / f".shard-{len(partials):05d}.partial")
            writer = pq.ParquetWriter(partials[-1], schema)
        writer.write_table(pa.Table.from_pylist(group, schema=schema), row_group_size=ROW_GROUP_ROWS)
        group.clear()

    def close_shard() -> None:
        nonlocal writer, shard_rows, shard_bytes
        if group or writer is None:
            write_group()
        assert writer is not None
        writer.close()
        writer, shard_rows, shard_bytes = None, 0, 0

    for record in records:
        image = read_image(record.image_path) if record.image_path is not None else None
        group.append(_row(record, image))
        shard_rows += 1
        shard_bytes += len(image) if image is not None else 0
        if shard_rows >= max_rows or shard_bytes >= max_bytes:
            close_shard()
        elif len(group) >= ROW_GROUP_ROWS:
            write_group()
    if shard_rows or not partials:
        close_shard()
    _remove_old_shards(directory)
    shards = [directory / shard_name(index, len(partials)) for index in range(len(partials))]
    for partial, shard in zip(partials, shards, strict=True):
        os.replace(partial, shard)
    return shards
