"""The checked settings of one build: formats, shard limits, quality, and the pseudonym key (read, or
created beside the dataset folder)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import msgspec

from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S
from demotrace.dataset.images import IMAGES_DIR
from demotrace.dataset.privacy import KnownNames, Pseudonyms, default_key_path, load_or_create_key
from demotrace.dataset.quality import QualityConfig

ExportFormat = Literal["agentnet", "parquet", "webdataset", "adp"]
ALL_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)


class ShardLimits(msgspec.Struct, frozen=True, kw_only=True):
    """When the Parquet and WebDataset writers start a new shard: whichever limit is reached first."""

    max_steps: int = 5000
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class BuildOptions:
    """The checked settings of one build; picklable, so a distributed engine can hand it to workers."""

    out_dir: Path
    formats: tuple[ExportFormat, ...]
    idle_gap: float
    quality: QualityConfig
    shard_limits: ShardLimits
    pseudonyms: Pseudonyms
    key_path: Path | None  # the key file read or created; None when the caller passed the key
    extra_names: KnownNames | None
    describer: DescriberConfig | None

    @property
    def images_dir(self) -> Path:
        return self.out_dir / IMAGES_DIR


def prepare_build(
    out_dir: Path,
    idle_gap: float = DEFAULT_IDLE_GAP_S,
    *,
    formats: Collection[ExportFormat] = ALL_FORMATS,
    quality: QualityConfig | None = None,
    pseudonym_key: bytes | None = None,
    extra_names: KnownNames | None = None,
    describer: DescriberConfig | None = None,
    shard_limits: ShardLimits | None = None,
) -> BuildOptions:
    """Check the settings, create the images folder and read (or create) the pseudonym key."""
    unknown = set(formats) - set(ALL_FORMATS)
    if unknown:
        raise ValueError(f"unknown dataset formats: {sorted(unknown)} (known: {list(ALL_FORMATS)})")
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    key_path: Path | None = None
    key = pseudonym_key
    if key is None:
        key_path = default_key_path(out_dir)
        key = load_or_create_key(key_path)
    return BuildOptions(
        out_dir=out_dir,
        formats=tuple(name for name in ALL_FORMATS if name in formats),
        idle_gap=idle_gap,
        quality=quality if quality is not None else QualityConfig(),
        shard_limits=shard_limits if shard_limits is not None else ShardLimits(),
        pseudonyms=Pseudonyms(key),
        key_path=key_path,
        extra_names=extra_names,
        describer=describer,
    )
