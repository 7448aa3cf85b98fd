"""Capture side: ``FrameEncoder`` turns each action's screenshot into a Frame payload that fits the
upload budget.

- a **key frame**: the whole monitor as one image (``image/webp`` lossless by default, or PNG);
- a **delta**: only the tiles that differ from the previous frame of the same monitor (see
  ``frames.delta``), with ``base_frame_id`` naming the frame it applies to;
- a frame identical to its base is a delta with no tiles: a ~60-byte reference (dedup).

A key frame starts every chain: on the first frame of a monitor, on a window/app switch (the
recorder passes ``key=True``), after ``key_interval`` frames (so one lost frame breaks at most that
many), and whenever so much changed that a delta would save little.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from PIL import Image

from demotrace.frames.delta import changed_tiles_of_pixels, encode_delta
from demotrace.frames.images import CODEC_MEDIA_TYPES, encode_adaptive, screen_png
from demotrace.frames.pixels import ScreenPixels, tile_grid
from demotrace.frames.settings import EncodingSettings
from demotrace.frames.tile_signatures import TileSignatures, can_sign, tile_signatures
from demotrace.model import Frame, Monitor
from demotrace.protocol import DELTA_MEDIA_TYPE


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame, ready to become a model.Frame (``to_frame``)."""

    frame_id: str
    media_type: str
    data: bytes
    width: int
    height: int
    base_frame_id: str | None = None  # set on deltas
    changed_tiles: int = -1  # tiles in a delta; -1 for a key frame

    @property
    def is_key(self) -> bool:
        return self.base_frame_id is None

    def to_frame(
        self, *, session_id: str, device_id: str, t: float, wall: float, left: int = 0, top: int = 0
    ) -> Frame:
        return Frame(
            frame_id=self.frame_id,
            session_id=session_id,
            device_id=device_id,
            t=t,
            wall=wall,
            left=left,
            top=top,
            width=self.width,
            height=self.height,
            media_type=self.media_type,
            data=self.data,
            base_frame_id=self.base_frame_id,
        )


MonitorBox = Monitor | tuple[int, int, int, int]


Base = TileSignatures | ScreenPixels  # signatures where the frame's rows fall on 8-byte words


def base_of(pixels: ScreenPixels, tile_size: int) -> Base:
    """What a chain keeps of a frame to find the next frame's changes: its tiles' signatures (see
    frames/tile_signatures.py: the frame's buffer can then go back to the grab pool at once), or the
    pixels themselves where the width does not fall on 8-byte words."""
    if can_sign(pixels.width, tile_size):
        return tile_signatures(pixels.data, pixels.size, tile_size)
    return pixels


def changed_tiles_since(base: Base, pixels: ScreenPixels, tile_size: int) -> tuple[list[int], Base]:
    """The tiles of ``pixels`` that differ from ``base``, and what to keep of ``pixels`` as the next base."""
    if isinstance(base, TileSignatures):
        signatures = tile_signatures(pixels.data, pixels.size, tile_size)
        return base.changed_tiles(signatures), signatures
    return changed_tiles_of_pixels(base.data, pixels.data, pixels.size, tile_size), pixels


def same_frame(base: Base, pixels: ScreenPixels, tile_size: int) -> tuple[bool, Base]:
    """Whether ``pixels`` equal ``base`` (dedup of full frames), and the next base."""
    if isinstance(base, TileSignatures):
        signatures = tile_signatures(pixels.data, pixels.size, tile_size)
        return base.same(signatures), signatures
    return pixels.data == base.data, pixels


@dataclass
class _Chain:
    """What the encoder remembers of one monitor's current chain: its last frame and, when deltas refer
    to it, its key frame, each as a ``Base`` (signatures, not the caller's buffer, where it can)."""

    last: Base
    last_frame_id: str
    key: Base | None  # kept only when deltas refer to the key frame
    key_frame_id: str
    length: int = 1  # frames in the chain so far, the key frame included


@dataclass
class FrameEncoder:
    """Encodes successive screenshots as key frames and deltas; one chain per monitor.

    Not thread-safe: the recorder's frame thread owns it. ``settings`` may be replaced between frames
    (a power change); the next frame then starts a new chain.
    """

    settings: EncodingSettings = field(default_factory=EncodingSettings)
    _chains: dict[tuple[int, int, int, int], _Chain] = field(default_factory=dict)
    _chain_settings: EncodingSettings | None = None

    def reset(self) -> None:
        """Forget every chain: the next frame of each monitor is a key frame (e.g. after a failed write)."""
        self._chains.clear()

    def encode(
        self,
        screenshot: ScreenPixels | Image.Image,
        monitor_box: MonitorBox,
        *,
        key: bool,
        frame_id: str | None = None,
        force_key: bool = False,
    ) -> EncodedFrame:
        """Encode one screenshot of ``monitor_box``. ``key`` says the window or app switched (a key frame
        if the settings want one there); ``force_key`` makes it a key frame whatever the settings.

        ScreenPixels whose rows do not fall on 8-byte words are kept as the next delta's base: do not
        change them afterwards."""
        settings = self.settings
        if settings != self._chain_settings:
            self._chains.clear()  # a delta's tiles must match its key frame's codec and tile size
            self._chain_settings = settings
        pixels = screenshot if isinstance(screenshot, ScreenPixels) else ScreenPixels.of_image(screenshot)
        box = _box_of(monitor_box)
        base: Base | None = None  # what to keep of these pixels, once known
        frame_id = frame_id or uuid.uuid4().hex
        chain = self._chains.get(box)
        force_key = force_key or (key and settings.key_on_window_change)
        if chain is not None and chain.last.size == pixels.size and not force_key:
            encoded, base = self._encode_against(chain, pixels, frame_id, settings)
            if encoded is not None and base is not None:
                chain.last, chain.last_frame_id = base, frame_id
                chain.length += 1
                return encoded
        codec, data = encode_adaptive(pixels, settings.key_codec, settings)
        base = base if base is not None else base_of(pixels, settings.tile_size)
        self._chains[box] = _Chain(base, frame_id, base if settings.reference == "key" else None, frame_id)
        return EncodedFrame(frame_id, CODEC_MEDIA_TYPES[codec], data, pixels.width, pixels.height)

    def _encode_against(
        self, chain: _Chain, pixels: ScreenPixels, frame_id: str, settings: EncodingSettings
    ) -> tuple[EncodedFrame | None, Base | None]:
        """A delta (or dedup reference) against the chain, or None when a key frame is due instead; and
        what to keep of ``pixels`` as the next base, when it was worked out on the way."""
        if settings.reference == "key" and chain.key is not None:
            base, base_id = chain.key, chain.key_frame_id
        else:
            base, base_id = chain.last, chain.last_frame_id
        if settings.delta:
            if chain.length >= settings.key_interval:
                return None, None
            tiles, next_base = changed_tiles_since(base, pixels, settings.tile_size)
            columns, rows = tile_grid(pixels.width, pixels.height, settings.tile_size)
            if len(tiles) > settings.max_delta_share * columns * rows:
                return None, next_base
        else:
            # Full frames: only an identical frame (dedup) refers to another.
            if not settings.dedup:
                return None, None
            same, next_base = same_frame(base, pixels, settings.tile_size)
            if not same:
                return None, next_base
            tiles = []
        data = encode_delta(pixels, tiles, settings.tile_size, settings.tile_codec, settings)
        return EncodedFrame(
            frame_id,
            DELTA_MEDIA_TYPE,
            data,
            pixels.width,
            pixels.height,
            base_frame_id=base_id,
            changed_tiles=len(tiles),
        ), next_base


# Frames held for a deferred scrub (on battery) are decoded, scrubbed and re-encoded at the usual level
# once on mains: held, they need a quick PNG, not a small one. On a 1080p screen of text zlib level 1
# took 51 ms of CPU against 91 at level 6, for 4 % more bytes (measured with screen_png).
HELD_PNG_LEVEL = 1


def encode_held(pixels: ScreenPixels, frame_id: str | None = None) -> EncodedFrame:
    """A self-contained PNG of a frame held for a deferred scrub (no delta may refer to it: the scrub
    rewrites it whole)."""
    data = screen_png(pixels, HELD_PNG_LEVEL)
    media_type = CODEC_MEDIA_TYPES["png"]
    return EncodedFrame(frame_id or uuid.uuid4().hex, media_type, data, pixels.width, pixels.height)


def _box_of(monitor_box: MonitorBox) -> tuple[int, int, int, int]:
    if isinstance(monitor_box, Monitor):
        return monitor_box.left, monitor_box.top, monitor_box.width, monitor_box.height
    return monitor_box
