"""How frames are encoded, and which settings each power state gets (cheaper effort on battery)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

ImageCodec = Literal["png", "webp-lossless", "webp"]
Reference = Literal["previous", "key"]


@dataclass(frozen=True)
class PowerState:
    """What the encoder needs to know about power: on battery, and how full it is (None: unknown)."""

    on_battery: bool = False
    battery_percent: float | None = None


@dataclass(frozen=True)
class EncodingSettings:
    """How frames are encoded. ``quality`` applies to lossy WebP only; ``method`` is WebP's effort (0-6)."""

    key_codec: ImageCodec = "webp-lossless"
    tile_codec: ImageCodec = "webp-lossless"
    quality: int = 75
    method: int = 4
    lossless_effort: int = 80  # WebP lossless compression effort, 0-100 (Pillow's default: 80)
    # A lossless image bigger than this may be photo-like: try lossy WebP (see encode_adaptive).
    lossy_above_bytes_per_pixel: float | None = 0.03
    png_level: int = 6
    tile_size: int = 16  # measured: 16 px ~12 % fewer bytes than 32 px, 64 px ~12 % more; same CPU
    delta: bool = True
    dedup: bool = True
    key_interval: int = 30  # a key frame at least every this many frames of a monitor
    key_on_window_change: bool = True
    reference: Reference = "previous"  # delta against the previous frame, or against the chain's key frame
    # A delta replacing more than this share of the tiles is sent as a key frame instead.
    max_delta_share: float = 0.6

    def __post_init__(self) -> None:
        if self.tile_size % 8 or not 8 <= self.tile_size <= 1024:
            raise ValueError(f"tile_size must be a multiple of 8 from 8 to 1024 pixels, not {self.tile_size}")
        if self.key_interval < 1:
            raise ValueError(f"key_interval must be at least 1, not {self.key_interval}")
        if not 0 <= self.method <= 6:
            raise ValueError(f"method (WebP effort) must be between 0 and 6, not {self.method}")
        if not 0 <= self.quality <= 100 or not 0 <= self.lossless_effort <= 100:
            raise ValueError(f"quality and lossless_effort must be from 0 to 100, not {self.quality}")

    @property
    def lossless(self) -> bool:
        return self.key_codec != "webp" and self.tile_codec != "webp"

    def describe(self) -> str:
        if not self.delta:
            return f"full {self.key_codec} m{self.method}" + (" + dedup" if self.dedup else "")
        return (
            f"delta {self.tile_size}px {self.tile_codec} tiles, key {self.key_codec}, m{self.method},"
            f" key every {self.key_interval}"
        )


# Measured on the demo session's real action frames (bench/frames.py): a key frame on every window
# switch cost more bytes *and* CPU than a delta (a switch changes part of the screen, a key frame
# re-encodes all of it), and WebP lossless effort above method 2 / effort 25 bought ~6 % fewer bytes for
# ~40 % more CPU. A key frame every 60 frames bounds what one lost frame can break. Key frames are PNG:
# lossless WebP of a whole 1080p screen needs ~40 MB of working memory (the recorder's peak) and more
# CPU, for ~1 MB per active hour fewer bytes at this key interval.
# A delta replacing more than 30 % of the tiles is a key frame instead: lossless WebP of a big packed
# image needs ~4x its pixels in working memory (+32 MB peak for a 55 % delta, against +12.5 MB for a PNG
# key frame of the whole screen), and no frame of the demo session changed that much (same bytes).
AC_POWER_SETTINGS = EncodingSettings(
    key_codec="png",
    method=2,
    lossless_effort=25,
    key_interval=60,
    key_on_window_change=False,
    max_delta_share=0.3,
)
# On battery: WebP's cheapest sane lossless effort (method 0 is pathological on screens: ~15x bigger).
BATTERY_SETTINGS = replace(AC_POWER_SETTINGS, method=1, lossless_effort=0)
LOW_BATTERY_PERCENT = 20.0
# Nearly empty: fewer key frames as well, since a key frame is where most of the encode time goes.
LOW_BATTERY_SETTINGS = replace(BATTERY_SETTINGS, key_interval=120)


def choose_encoding(power: PowerState) -> EncodingSettings:
    """Encoding settings for a power state: full effort on mains, cheaper effort on battery."""
    if not power.on_battery:
        return AC_POWER_SETTINGS
    if power.battery_percent is not None and power.battery_percent <= LOW_BATTERY_PERCENT:
        return LOW_BATTERY_SETTINGS
    return BATTERY_SETTINGS
