"""Frame encoding that fits the upload budget: key frames, tile deltas, dedup; and their resolution.

Capture side, ``FrameEncoder`` turns each action's screenshot into a Frame payload:

- a **key frame**: the whole monitor as one image (``image/webp`` lossless by default, or PNG);
- a **delta**: only the tiles (``tile_size`` px squares) that differ from the previous frame of the
  same monitor, packed into one small image, plus a bitmap of which tiles they are
  (``application/x-demotrace-delta``, with ``base_frame_id`` naming the frame it applies to);
- a frame identical to its base is a delta with no tiles: a ~60-byte reference (dedup).

A key frame starts every chain: on the first frame of a monitor, on a window/app switch (the
recorder passes ``key=True``), after ``key_interval`` frames (so one lost frame breaks at most that
many), and whenever so much changed that a delta would save little.

Dataset side, ``resolving_loader(load_frame)`` wraps any frame loader so that every frame comes
back as a full image (deltas are rebuilt from their chain, with an LRU cache of decoded images so
a chain is decoded once). A frame whose chain is broken (a base missing or undecodable) resolves
to None: never a wrong image.

Tiles are replaced, never added as residuals, and change detection compares the new screenshot
with the previous *screenshot* (not with its lossy rebuild): with lossy tiles the error of any
pixel is that of one lossy encode and does not grow along a chain.

The encoder works on ``ScreenPixels``: the grab's own BGRX bytes. A 1080p screenshot stays one
8 MB buffer from the grab to the spool (change detection compares it in place, the chain keeps it as
the next base, and only changed tiles or a key frame become Pillow images), instead of a Pillow image
plus a byte copy per stage. Pillow images are accepted too and converted first.

This module is shared by capture and dataset code: it imports only the model, the standard
library, Pillow and numpy.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import msgspec
import numpy

# PngImagePlugin and WebPImagePlugin register the two formats frames are saved in, up front: else the
# first WebP save makes Pillow import all of its ~40 format plugins (measured: 0.2 s of CPU in the
# middle of a recording, and ~50 modules' memory for good).
from PIL import Image, ImageChops, PngImagePlugin, WebPImagePlugin  # noqa: F401

from demotrace.model import Frame, Monitor

log = logging.getLogger(__name__)

DELTA_MEDIA_TYPE = "application/x-demotrace-delta"
ImageCodec = Literal["png", "webp-lossless", "webp"]
Reference = Literal["previous", "key"]

# Payload of a delta: magic, image width and height, tile size, tile codec, length of the zlib'd
# tile bitmap; then the bitmap (bit i set: tile i, row-major, is in the tiles image), then the tiles
# image (absent when no tile changed).
_DELTA_MAGIC = b"DTD1"
_DELTA_HEADER = struct.Struct("<4sHHHBI")
_CODEC_IDS: dict[ImageCodec, int] = {"png": 1, "webp-lossless": 2, "webp": 3}
_CODECS_BY_ID = {number: codec for codec, number in _CODEC_IDS.items()}
_MEDIA_TYPES: dict[ImageCodec, str] = {
    "png": "image/png",
    "webp-lossless": "image/webp",
    "webp": "image/webp",
}
# Photo-like content goes lossy only when that makes it at least this many times smaller.
LOSSY_MIN_GAIN = 3
# ... and is tried lossy only when it has more colours than this (or than a tenth of its pixels, for
# small images): photos, video and gradients have thousands; text and UI, even dense and anti-aliased,
# a few hundred (measured on the demo session's frames: at most ~1,000 on a whole screen, ~200 in a
# delta's tiles, where lossy was tried on half of the deltas and never kept).
LOSSY_MIN_COLOURS = 4096
# Decoding a frame never walks more links than this, whatever the stored data claims.
MAX_CHAIN_WALK = 10_000


class FrameCodecError(ValueError):
    """A frame payload cannot be decoded (corrupt, truncated, or from an unknown format version)."""


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


# -- pure helpers ----------------------------------------------------------------------------------


def encode_image(image: Image.Image | ScreenPixels, codec: ImageCodec, settings: EncodingSettings) -> bytes:
    """One image as PNG, lossless WebP or lossy WebP bytes. Screen pixels go to PNG as they are (see
    ``screen_png``); to WebP, through a Pillow copy."""
    if isinstance(image, ScreenPixels):
        if codec == "png":
            return screen_png(image, settings.png_level)
        image = image.image()
    buffer = io.BytesIO()
    if codec == "png":
        image.save(buffer, "PNG", compress_level=settings.png_level)
    elif codec == "webp-lossless":
        # In lossless mode Pillow's quality is the compression effort, not a quality.
        image.save(buffer, "WEBP", lossless=True, quality=settings.lossless_effort, method=settings.method)
    else:
        image.save(buffer, "WEBP", quality=settings.quality, method=settings.method)
    return buffer.getvalue()


def encode_adaptive(
    image: Image.Image | ScreenPixels, codec: ImageCodec, settings: EncodingSettings
) -> tuple[ImageCodec, bytes]:
    """Encode with ``codec``; if a lossless result is photo-sized, lossy WebP when that is far smaller.

    Text and UI compress losslessly to ~0.01 byte per pixel, and lossy WebP is no smaller there (and
    smears glyphs); photos, video and gradients take 0.1-0.3 byte per pixel losslessly and ~10x less
    lossy. So only a large lossless result with many colours is tried lossy, and lossy is kept only if
    it is at most ``1 / LOSSY_MIN_GAIN`` of the lossless size.
    """
    data = encode_image(image, codec, settings)
    limit = settings.lossy_above_bytes_per_pixel
    if codec == "webp" or limit is None or len(data) <= limit * image.width * image.height:
        return codec, data
    if not has_many_colours(image):
        return codec, data
    lossy = encode_image(image, "webp", settings)
    return ("webp", lossy) if len(lossy) * LOSSY_MIN_GAIN <= len(data) else (codec, data)


def has_many_colours(image: Image.Image | ScreenPixels) -> bool:
    """Whether an image has more colours than text and UI have (see LOSSY_MIN_COLOURS)."""
    view = image.stored_view() if isinstance(image, ScreenPixels) else image
    return view.getcolors(min(LOSSY_MIN_COLOURS, max(1, view.width * view.height // 10))) is None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_RGB_HEADER = struct.Struct(">IIBBBBB")  # width, height, bit depth 8, colour type 2 (RGB), 0, 0, 0


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def screen_png(pixels: ScreenPixels, level: int) -> bytes:
    """The pixels as an RGB PNG, compressed straight from their BGRX buffer.

    Pillow saves PNG from an RGB image only: a frame-sized copy of the screen first (measured: +18.5 MiB
    of peak RSS for a 1080p key frame, the recorder's largest transient). Pillow's PNG compressor (row
    filters and zlib, as its PNG writer uses) reads the buffer in place instead: its ``stored_view``
    packed as "BGR" puts the stored B, G, R out as R, G, B. Only the PNG container is written here.
    Same bytes as Pillow's PNG but for how the data is cut into IDAT chunks."""
    compressed = pixels.stored_view().tobytes("zip", "BGR", False, level)
    header = _PNG_RGB_HEADER.pack(pixels.width, pixels.height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", compressed),
            _png_chunk(b"IEND", b""),
        )
    )


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """(columns, rows) of tiles covering an image; edge tiles may stick out past the image."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)


# Screen pixels are BGRX, 4 bytes each, as X11 grabs (and mss) give them; the 4th byte is not a colour.
SCREEN_BYTES_PER_PIXEL = 4
# Where pixels live: a grab's own bytearray, or a reused buffer (a memoryview of a mapping).
PixelBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview


@dataclass(frozen=True)
class ScreenPixels:
    """A screenshot as grabbed: raw BGRX bytes, row-major, 4 per pixel (the 4th is unused).

    The encoder keeps the buffer as the base of the next delta, so whoever passes one must not change
    it afterwards (the recorder paints blackouts and OCR boxes into it *before* encoding).

    ``release`` (optional) gets the buffer back when this object goes away, for reuse by the next grab:
    the object is then the buffer's only owner, so never copy it (``dataclasses.replace``) nor keep
    ``data`` (or a view of it) longer than the object."""

    data: PixelBuffer
    width: int
    height: int
    release: Callable[[WritableBuffer], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        expected = self.width * self.height * SCREEN_BYTES_PER_PIXEL
        if self.width <= 0 or self.height <= 0 or len(self.data) != expected:
            raise ValueError(
                f"{len(self.data)} bytes are not a {self.width}x{self.height} BGRX screenshot"
                f" ({expected} bytes)"
            )

    def __del__(self) -> None:
        if self.release is not None and not isinstance(self.data, bytes):
            self.release(self.data)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def writable(self) -> WritableBuffer:
        """The buffer, to paint into (blackouts, OCR boxes) before the pixels are encoded."""
        if isinstance(self.data, bytes) or (isinstance(self.data, memoryview) and self.data.readonly):
            raise TypeError("these pixels are read-only: paint only into a grab's own buffer")
        return self.data

    @classmethod
    def of_image(cls, image: Image.Image) -> ScreenPixels:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return cls(rgb.tobytes("raw", "BGRX"), rgb.width, rgb.height)

    def image(self) -> Image.Image:
        """A new RGB Pillow image of these pixels (a frame-sized copy: for key frames and OCR)."""
        # Pillow decodes from any buffer; its type hints leave out memoryview.
        return Image.frombuffer("RGB", self.size, self.data, "raw", "BGRX", 0, 1)  # type: ignore[arg-type]

    def stored_view(self) -> Image.Image:
        """A Pillow image *sharing* the buffer, its bytes as stored: B, G, R, X under the names R, G, B, X.
        For reading bytes whatever their colour (PNG packing as "BGR", counting colours); no copy."""
        return Image.frombuffer("RGBX", self.size, self.data, "raw", "RGBX", 0, 1)  # type: ignore[arg-type]

    def rgb_array(self) -> numpy.ndarray:
        """The pixels as a (height, width, 3) RGB view of the buffer (no copy; read-only use)."""
        bgrx = numpy.frombuffer(self.data, numpy.uint8).reshape(
            self.height, self.width, SCREEN_BYTES_PER_PIXEL
        )
        return bgrx[:, :, 2::-1]


def changed_tiles(
    previous: Image.Image, current: Image.Image, tile_size: int, *, use_numpy: bool = True
) -> list[int]:
    """Row-major indices of the tiles where two same-sized RGB images differ in any pixel."""
    if previous.size != current.size:
        raise ValueError(f"cannot compare a {previous.size} image with a {current.size} one")
    if use_numpy:
        return changed_tiles_of_pixels(previous.tobytes(), current.tobytes(), current.size, tile_size, 3)
    width, height = current.size
    columns, rows = tile_grid(width, height, tile_size)
    difference = ImageChops.difference(previous, current)
    if difference.getbbox() is None:
        return []
    return [
        row * columns + column
        for row in range(rows)
        for column in range(columns)
        if difference.crop(_tile_box(row * columns + column, columns, tile_size)).getbbox() is not None
    ]


def changed_tiles_of_pixels(
    previous: PixelBuffer,
    current: PixelBuffer,
    size: tuple[int, int],
    tile_size: int,
    bytes_per_pixel: int = SCREEN_BYTES_PER_PIXEL,
) -> list[int]:
    """``changed_tiles`` over the raw bytes of two same-sized images (BGRX screen pixels, or RGB with
    ``bytes_per_pixel=3``). With BGRX the unused byte counts too: a grab that varied it would only
    send more tiles, never fewer."""
    width, height = size
    columns, rows = tile_grid(width, height, tile_size)
    # Compare 8 bytes at a time where rows and tiles fall on 8-byte boundaries (BGRX always does):
    # ~5x faster than byte by byte.
    row_bytes, tile_bytes = width * bytes_per_pixel, tile_size * bytes_per_pixel
    unit = 8 if row_bytes % 8 == 0 and tile_bytes % 8 == 0 else 1
    row_words, tile_words = row_bytes // unit, tile_bytes // unit
    word = numpy.uint64 if unit == 8 else numpy.uint8
    before = numpy.frombuffer(previous, word).reshape(height, row_words)
    after = numpy.frombuffer(current, word).reshape(height, row_words)
    differs = (before != after).view(numpy.uint8)  # max() over uint8 is vectorised, any() over bool is not
    full_bands = height // tile_size
    bands = differs[: full_bands * tile_size].reshape(full_bands, tile_size, row_words).max(axis=1)
    if full_bands < rows:
        bands = numpy.vstack([bands, differs[full_bands * tile_size :].max(axis=0, keepdims=True)])
    bands = numpy.pad(bands, ((0, 0), (0, columns * tile_words - row_words)))
    per_tile = bands.reshape(rows, columns, tile_words).max(axis=2)
    return [int(index) for index in numpy.flatnonzero(per_tile)]


def _tile_box(index: int, columns: int, tile_size: int) -> tuple[int, int, int, int]:
    x = (index % columns) * tile_size
    y = (index // columns) * tile_size
    return x, y, x + tile_size, y + tile_size


def _pack_columns(count: int, grid_columns: int) -> int:
    """Width, in tiles, of the image the changed tiles are packed into (their screen order, row-major)."""
    return max(1, min(count, grid_columns))


def pack_tiles(pixels: ScreenPixels, tiles: list[int], tile_size: int) -> Image.Image:
    """The given tiles side by side, row-major, in one RGB image (edge tiles padded with black).

    Copies only the tiles: whole tiles in one gather over a tiled view of the buffer, the few that
    stick out past the right or bottom edge one by one."""
    width, height = pixels.size
    columns, _ = tile_grid(width, height, tile_size)
    pack_columns = _pack_columns(len(tiles), columns)
    pack_rows = math.ceil(len(tiles) / pack_columns)
    source = pixels.rgb_array()
    full_columns, full_rows = width // tile_size, height // tile_size
    slots = numpy.zeros((pack_rows * pack_columns, tile_size, tile_size, 3), numpy.uint8)
    indices = numpy.asarray(tiles, numpy.int64)
    tile_rows, tile_columns = indices // columns, indices % columns
    whole = (tile_rows < full_rows) & (tile_columns < full_columns)
    if whole.any():
        grid = source[: full_rows * tile_size, : full_columns * tile_size].reshape(
            full_rows, tile_size, full_columns, tile_size, 3
        )
        slots[numpy.flatnonzero(whole)] = grid[tile_rows[whole], :, tile_columns[whole]]
    for slot in numpy.flatnonzero(~whole):
        x, y = int(tile_columns[slot]) * tile_size, int(tile_rows[slot]) * tile_size
        block = source[y : y + tile_size, x : x + tile_size]
        slots[slot, : block.shape[0], : block.shape[1]] = block
    packed = (
        slots.reshape(pack_rows, pack_columns, tile_size, tile_size, 3)
        .swapaxes(1, 2)
        .reshape(pack_rows * tile_size, pack_columns * tile_size, 3)
    )
    return Image.fromarray(packed)


def _bitmap(tiles: list[int], count: int) -> bytes:
    bits = bytearray((count + 7) // 8)
    for index in tiles:
        bits[index >> 3] |= 1 << (index & 7)
    return bytes(bits)


def _tiles_of_bitmap(bits: bytes, count: int) -> list[int]:
    return [index for index in range(count) if bits[index >> 3] >> (index & 7) & 1]


def encode_delta(
    pixels: ScreenPixels, tiles: list[int], tile_size: int, codec: ImageCodec, settings: EncodingSettings
) -> bytes:
    """The delta payload that turns a base frame into ``pixels`` by replacing ``tiles``."""
    columns, rows = tile_grid(pixels.width, pixels.height, tile_size)
    bitmap = zlib.compress(_bitmap(tiles, columns * rows), 9)
    codec_id, body = 0, b""
    if tiles:
        used, body = encode_adaptive(pack_tiles(pixels, tiles, tile_size), codec, settings)
        codec_id = _CODEC_IDS[used]
    header = _DELTA_HEADER.pack(_DELTA_MAGIC, pixels.width, pixels.height, tile_size, codec_id, len(bitmap))
    return header + bitmap + body


@dataclass(frozen=True)
class DeltaPayload:
    width: int
    height: int
    tile_size: int
    tiles: list[int]
    tiles_image: bytes


def parse_delta(data: bytes) -> DeltaPayload:
    """Read a delta payload's header, tile list and tiles image; FrameCodecError if it is malformed."""
    if len(data) < _DELTA_HEADER.size:
        raise FrameCodecError(f"delta payload of {len(data)} bytes is shorter than its header")
    magic, width, height, tile_size, codec_id, bitmap_length = _DELTA_HEADER.unpack_from(data)
    if magic != _DELTA_MAGIC:
        raise FrameCodecError(f"not a demotrace delta payload (magic {magic!r})")
    if tile_size == 0 or width == 0 or height == 0:
        raise FrameCodecError(f"delta payload has an empty {width}x{height} image or tile size {tile_size}")
    if codec_id != 0 and codec_id not in _CODECS_BY_ID:
        raise FrameCodecError(f"delta payload uses an unknown tile codec {codec_id}")
    columns, rows = tile_grid(width, height, tile_size)
    start = _DELTA_HEADER.size
    try:
        bits = zlib.decompress(data[start : start + bitmap_length])
    except zlib.error as error:
        raise FrameCodecError(f"delta payload has a corrupt tile map: {error}") from error
    if len(bits) != (columns * rows + 7) // 8:
        raise FrameCodecError(f"delta tile map has {len(bits)} bytes for {columns}x{rows} tiles")
    tiles = _tiles_of_bitmap(bits, columns * rows)
    tiles_image = data[start + bitmap_length :]
    if bool(tiles) != bool(tiles_image) or bool(tiles) != (codec_id != 0):
        raise FrameCodecError("delta payload's tile map and tiles image disagree")
    return DeltaPayload(width, height, tile_size, tiles, tiles_image)


def apply_delta(base: Image.Image, payload: DeltaPayload) -> Image.Image:
    """A new image: ``base`` with the payload's tiles pasted in. The base is left untouched."""
    if base.size != (payload.width, payload.height):
        raise FrameCodecError(
            f"delta for a {payload.width}x{payload.height} image"
            f" cannot apply to a {base.width}x{base.height} one"
        )
    result = base.copy()
    if not payload.tiles:
        return result
    try:
        opened = Image.open(io.BytesIO(payload.tiles_image))
        opened.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise FrameCodecError(f"delta tiles image does not decode: {error}") from error
    size = payload.tile_size
    columns, _ = tile_grid(payload.width, payload.height, size)
    pack_columns = _pack_columns(len(payload.tiles), columns)
    if (
        opened.width < pack_columns * size
        or opened.height < math.ceil(len(payload.tiles) / pack_columns) * size
    ):
        raise FrameCodecError(f"delta tiles image {opened.size} is too small for {len(payload.tiles)} tiles")
    packed = opened.convert("RGB")
    for slot, index in enumerate(payload.tiles):
        x, y, _, _ = _tile_box(index, columns, size)
        result.paste(packed.crop(_tile_box(slot, pack_columns, size)), (x, y))
    return result


@dataclass(frozen=True)
class ImageError:
    """How far a rebuilt image is from the original: PSNR in dB (inf when equal), max channel error."""

    psnr: float
    max_abs: int


def image_error(original: Image.Image, rebuilt: Image.Image) -> ImageError:
    """PSNR and the largest per-channel difference between two same-sized images."""
    first, second = original.convert("RGB"), rebuilt.convert("RGB")
    if first.size != second.size:
        raise ValueError(f"cannot compare a {first.size} image with a {second.size} one")
    difference = ImageChops.difference(first, second)
    max_abs = max(int(band[1]) for band in difference.getextrema() if isinstance(band, tuple))
    if max_abs == 0:
        return ImageError(math.inf, 0)
    histogram = difference.histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (first.width * first.height * 3)
    return ImageError(10 * math.log10(255**2 / mse), max_abs)


# -- capture side ----------------------------------------------------------------------------------


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


@dataclass
class _Chain:
    """What the encoder remembers of one monitor's current chain: the pixels of its last frame (the
    caller's buffer itself, not a copy) and of its key frame when deltas refer to that."""

    last_pixels: ScreenPixels
    last_frame_id: str
    key_pixels: ScreenPixels | None  # kept only when deltas refer to the key frame
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

        ScreenPixels are kept as the next delta's base: do not change them afterwards."""
        settings = self.settings
        if settings != self._chain_settings:
            self._chains.clear()  # a delta's tiles must match its key frame's codec and tile size
            self._chain_settings = settings
        pixels = screenshot if isinstance(screenshot, ScreenPixels) else ScreenPixels.of_image(screenshot)
        box = _box_of(monitor_box)
        frame_id = frame_id or uuid.uuid4().hex
        chain = self._chains.get(box)
        force_key = force_key or (key and settings.key_on_window_change)
        if chain is not None and chain.last_pixels.size == pixels.size and not force_key:
            encoded = self._encode_against(chain, pixels, frame_id, settings)
            if encoded is not None:
                chain.last_pixels, chain.last_frame_id = pixels, frame_id
                chain.length += 1
                return encoded
        codec, data = encode_adaptive(pixels, settings.key_codec, settings)
        key_pixels = pixels if settings.reference == "key" else None
        self._chains[box] = _Chain(pixels, frame_id, key_pixels, frame_id)
        return EncodedFrame(frame_id, _MEDIA_TYPES[codec], data, pixels.width, pixels.height)

    def _encode_against(
        self, chain: _Chain, pixels: ScreenPixels, frame_id: str, settings: EncodingSettings
    ) -> EncodedFrame | None:
        """A delta (or dedup reference) against the chain, or None when a key frame is due instead."""
        if settings.reference == "key" and chain.key_pixels is not None:
            base_pixels, base_id = chain.key_pixels, chain.key_frame_id
        else:
            base_pixels, base_id = chain.last_pixels, chain.last_frame_id
        if settings.delta:
            if chain.length >= settings.key_interval:
                return None
            tiles = changed_tiles_of_pixels(base_pixels.data, pixels.data, pixels.size, settings.tile_size)
            columns, rows = tile_grid(pixels.width, pixels.height, settings.tile_size)
            if len(tiles) > settings.max_delta_share * columns * rows:
                return None
        else:
            # Full frames: only an identical frame (dedup) refers to another.
            if not settings.dedup or pixels.data != base_pixels.data:
                return None
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
        )


def _box_of(monitor_box: MonitorBox) -> tuple[int, int, int, int]:
    if isinstance(monitor_box, Monitor):
        return monitor_box.left, monitor_box.top, monitor_box.width, monitor_box.height
    return monitor_box


# -- dataset side ----------------------------------------------------------------------------------

LoadFrame = Callable[[str], Frame | None]


class FrameResolver:
    """Gives every frame as a full image Frame, rebuilding deltas from their chain.

    Decoded images are kept in an LRU cache (``cache_size`` images, ~6 MB each at 1080p) so that
    resolving a session's frames in order decodes each one once. Resolved frames are encoded as
    ``output`` ("png" or "webp-lossless"). Key frames are returned as stored.
    """

    def __init__(self, load_frame: LoadFrame, *, cache_size: int = 16, output: ImageCodec = "png") -> None:
        if output == "webp":
            raise ValueError(
                "resolved frames are encoded losslessly: output must be 'png' or 'webp-lossless'"
            )
        self._load_frame = load_frame
        self._cache_size = cache_size
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._output = output
        self._output_settings = EncodingSettings(png_level=6, method=4)
        self.decoded = 0  # frames decoded so far (cache misses): for tests and benchmarks

    def __call__(self, frame_id: str) -> Frame | None:
        return self.resolve(frame_id)

    def resolve(self, frame_id: str) -> Frame | None:
        """The frame as a full image, or None if it (or any frame its chain needs) is missing or corrupt."""
        frame = self._load_frame(frame_id)
        if frame is None or frame.media_type != DELTA_MEDIA_TYPE:
            return frame
        image = self.image(frame_id, frame)
        if image is None:
            return None
        return msgspec.structs.replace(
            frame,
            media_type=_MEDIA_TYPES[self._output],
            data=encode_image(image, self._output, self._output_settings),
            base_frame_id=None,
        )

    def image(self, frame_id: str, frame: Frame | None = None) -> Image.Image | None:
        """The decoded pixels of a frame (a shared cached image: do not modify it), or None."""
        # Walk back to a cached image or a key frame, then apply the deltas forward.
        pending: list[tuple[str, Frame]] = []
        current_id: str | None = frame_id
        base: Image.Image | None = None
        while current_id is not None:
            cached = self._images.get(current_id)
            if cached is not None:
                self._images.move_to_end(current_id)
                base = cached
                break
            current = (
                frame if (frame is not None and current_id == frame_id) else self._load_frame(current_id)
            )
            if current is None:
                log.warning("frame %s cannot be rebuilt: frame %s is missing", frame_id, current_id)
                return None
            if len(pending) >= MAX_CHAIN_WALK or any(seen == current_id for seen, _ in pending):
                log.warning("frame %s cannot be rebuilt: its chain loops or is too long", frame_id)
                return None
            pending.append((current_id, current))
            current_id = current.base_frame_id if current.media_type == DELTA_MEDIA_TYPE else None
        try:
            for pending_id, pending_frame in reversed(pending):
                base = self._decode(pending_frame, base)
                self._remember(pending_id, base)
        except FrameCodecError as error:
            log.warning("frame %s cannot be rebuilt: %s", frame_id, error)
            return None
        return base

    def _decode(self, frame: Frame, base: Image.Image | None) -> Image.Image:
        self.decoded += 1
        if frame.media_type != DELTA_MEDIA_TYPE:
            try:
                image = Image.open(io.BytesIO(frame.data))
                image.load()
            except (OSError, SyntaxError, ValueError) as error:
                raise FrameCodecError(
                    f"frame {frame.frame_id} ({frame.media_type}) does not decode: {error}"
                ) from error
            return image.convert("RGB")
        if base is None:
            raise FrameCodecError(f"delta frame {frame.frame_id} has no base frame")
        return apply_delta(base, parse_delta(frame.data))

    def _remember(self, frame_id: str, image: Image.Image) -> None:
        self._images[frame_id] = image
        self._images.move_to_end(frame_id)
        while len(self._images) > self._cache_size:
            self._images.popitem(last=False)


def resolving_loader(load_frame: LoadFrame, *, cache_size: int = 16, output: ImageCodec = "png") -> LoadFrame:
    """Wrap a frame loader (``spool.load_frame``, ``CollectorReader.load_frame``): deltas come back whole."""
    return FrameResolver(load_frame, cache_size=cache_size, output=output).resolve


def is_delta(frame: Frame) -> bool:
    return frame.media_type == DELTA_MEDIA_TYPE


def frame_needs(frame: Frame) -> str | None:
    """The frame id this frame cannot be shown without (its base), or None for a self-contained frame."""
    return frame.base_frame_id if is_delta(frame) else None


__all__ = [
    "AC_POWER_SETTINGS",
    "BATTERY_SETTINGS",
    "DELTA_MEDIA_TYPE",
    "EncodedFrame",
    "EncodingSettings",
    "FrameCodecError",
    "FrameEncoder",
    "FrameResolver",
    "ImageError",
    "PowerState",
    "ScreenPixels",
    "apply_delta",
    "changed_tiles",
    "choose_encoding",
    "encode_delta",
    "image_error",
    "parse_delta",
    "resolving_loader",
]
