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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from demotrace.dataset.export.shards import Shard
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


def write_parquet_piece(
    records: Iterable[StepRecord], read_image: Callable[[str], bytes | None], path: Path
) -> list[int]:
    """One session's rows, images embedded, as an Arrow IPC file (the piece a worker writes); returns
    each row's image bytes (what a shard's size counts)."""
    rows: list[dict[str, Any]] = []
    sizes: list[int] = []
    for record in records:
        image = read_image(record.image_path) if record.image_path is not None else None
        rows.append(_row(record, image))
        sizes.append(len(image) if image is not None else 0)
    schema = parquet_schema()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return sizes


def assemble_parquet_shards(pieces: Sequence[Path], shards: Sequence[Shard], directory: Path) -> list[Path]:
    """Write the planned shards (``shards.plan_shards``) from the pieces' rows and return their paths.

    Pieces are memory-mapped and sliced without copying; a shard is written a row group
    (``ROW_GROUP_ROWS``) at a time, so memory holds one group's images, not a shard's."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = parquet_schema()
    partials: list[Path] = []
    for number, shard in enumerate(shards):
        partials.append(directory / f".shard-{number:05d}.partial")
        with pq.ParquetWriter(partials[-1], schema) as writer:
            slices = [_piece(pieces[index]).slice(start, stop - start) for index, start, stop in shard]
            table = pa.concat_tables(slices) if slices else schema.empty_table()
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    _remove_old_shards(directory)
    paths = [directory / shard_name(index, len(partials)) for index in range(len(partials))]
    for partial, path in zip(partials, paths, strict=True):
        os.replace(partial, path)
    return paths


def _piece(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _remove_old_shards(directory: Path) -> None:
    # A previous build's shards have another "-of-N": left behind, a glob would read both builds.
    for old in directory.glob(f"{SHARD_PREFIX}*.parquet"):
        old.unlink()
