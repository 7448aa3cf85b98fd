"""The delta wire format: which tiles changed since a base frame, and those tiles packed in one image.

A delta (``protocol.DELTA_MEDIA_TYPE``, with the frame's ``base_frame_id`` naming the frame it applies
to) holds only the tiles (``tile_size`` px squares) that differ from its base, packed into one small
image, plus a bitmap of which tiles they are. A frame identical to its base is a delta with no tiles:
a ~60-byte reference (dedup).

Tiles are replaced, never added as residuals, and change detection compares the new screenshot
with the previous *screenshot* (not with its lossy rebuild): with lossy tiles the error of any
pixel is that of one lossy encode and does not grow along a chain.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass

import numpy
from PIL import Image, ImageChops

from demotrace.frames.images import encode_adaptive
from demotrace.frames.pixels import SCREEN_BYTES_PER_PIXEL, PixelBuffer, ScreenPixels, tile_box, tile_grid
from demotrace.frames.settings import EncodingSettings, ImageCodec

# Payload of a delta: magic, image width and height, tile size, tile codec, length of the zlib'd
# tile bitmap; then the bitmap (bit i set: tile i, row-major, is in the tiles image), then the tiles
# image (absent when no tile changed).
_DELTA_MAGIC = b"DTD1"
# Smallest tile a delta may use: tiny tiles would make the tile map of a large image huge.
MIN_TILE_SIZE = 8
_DELTA_HEADER = struct.Struct("<4sHHHBI")
_CODEC_IDS: dict[ImageCodec, int] = {"png": 1, "webp-lossless": 2, "webp": 3}
_CODECS_BY_ID = {number: codec for codec, number in _CODEC_IDS.items()}


class FrameCodecError(ValueError):
    """A frame payload cannot be decoded (corrupt, truncated, or from an unknown format version)."""


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
        if difference.crop(tile_box(row * columns + column, columns, tile_size)).getbbox() is not None
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
    flags = numpy.unpackbits(numpy.frombuffer(bits, numpy.uint8), count=count, bitorder="little")
    return [int(index) for index in numpy.flatnonzero(flags)]


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


def _header(data: bytes) -> tuple[int, int, int, int, int]:
    """width, height, tile size, codec id and bitmap length of a delta payload, checked."""
    if len(data) < _DELTA_HEADER.size:
        raise FrameCodecError(f"delta payload of {len(data)} bytes is shorter than its header")
    magic, width, height, tile_size, codec_id, bitmap_length = _DELTA_HEADER.unpack_from(data)
    if magic != _DELTA_MAGIC:
        raise FrameCodecError(f"not a demotrace delta payload (magic {magic!r})")
    if tile_size < MIN_TILE_SIZE or width == 0 or height == 0:
        raise FrameCodecError(f"delta payload has an empty {width}x{height} image or tile size {tile_size}")
    if codec_id != 0 and codec_id not in _CODECS_BY_ID:
        raise FrameCodecError(f"delta payload uses an unknown tile codec {codec_id}")
    return width, height, tile_size, codec_id, bitmap_length


def delta_size(data: bytes) -> tuple[int, int]:
    """The image width and height a delta payload's header says (FrameCodecError if malformed)."""
    width, height, *_ = _header(data)
    return width, height


def parse_delta(data: bytes) -> DeltaPayload:
    """Read a delta payload's header, tile list and tiles image; FrameCodecError if it is malformed."""
    width, height, tile_size, codec_id, bitmap_length = _header(data)
    columns, rows = tile_grid(width, height, tile_size)
    start = _DELTA_HEADER.size
    expected = (columns * rows + 7) // 8
    try:
        # Never inflate more than the grid needs: a tiny zlib stream can expand to gigabytes.
        inflater = zlib.decompressobj()
        bits = inflater.decompress(data[start : start + bitmap_length], expected + 1)
    except zlib.error as error:
        raise FrameCodecError(f"delta payload has a corrupt tile map: {error}") from error
    if len(bits) != expected:
        raise FrameCodecError(f"delta tile map has {len(bits)} bytes for {columns}x{rows} tiles")
    tiles = _tiles_of_bitmap(bits, columns * rows)
    tiles_image = data[start + bitmap_length :]
    if bool(tiles) != bool(tiles_image) or bool(tiles) != (codec_id != 0):
        raise FrameCodecError("delta payload's tile map and tiles image disagree")
    return DeltaPayload(width, height, tile_size, tiles, tiles_image)


def paste_tiles(pixels: numpy.ndarray, payload: DeltaPayload) -> list[tuple[int, int]]:
    """Write the payload's tiles into ``pixels`` (a (height, width, 3) RGB array, changed in place) and
    return the (top, bottom) row spans they cover, one per tile row. The inverse of ``pack_tiles``:
    whole tiles in one scatter, the few that stick out past the right or bottom edge one by one."""
    height, width = pixels.shape[0], pixels.shape[1]
    if (width, height) != (payload.width, payload.height):
        raise FrameCodecError(
            f"delta for a {payload.width}x{payload.height} image cannot apply to a {width}x{height} one"
        )
    if not payload.tiles:
        return []
    size = payload.tile_size
    columns, _ = tile_grid(width, height, size)
    pack_columns = _pack_columns(len(payload.tiles), columns)
    pack_rows = math.ceil(len(payload.tiles) / pack_columns)
    needed = (pack_columns * size, pack_rows * size)
    try:
        opened = Image.open(io.BytesIO(payload.tiles_image))
        # Checked from the header, before decoding: the tiles image must be the size of its tiles.
        if opened.width < needed[0] or opened.height < needed[1]:
            raise FrameCodecError(
                f"delta tiles image {opened.size} is too small for {len(payload.tiles)} tiles"
            )
        if opened.width > needed[0] + size or opened.height > needed[1] + size:
            raise FrameCodecError(f"delta tiles image {opened.size} is larger than its tiles {needed}")
        opened.load()
    except FrameCodecError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise FrameCodecError(f"delta tiles image does not decode: {error}") from error
    packed = numpy.asarray(opened.convert("RGB"))[: pack_rows * size, : pack_columns * size]
    slots = (
        packed.reshape(pack_rows, size, pack_columns, size, 3)
        .swapaxes(1, 2)
        .reshape(pack_rows * pack_columns, size, size, 3)
    )
    indices = numpy.asarray(payload.tiles, numpy.int64)
    tile_rows, tile_columns = indices // columns, indices % columns
    full_columns, full_rows = width // size, height // size
    whole = (tile_rows < full_rows) & (tile_columns < full_columns)
    if whole.any():
        grid = pixels[: full_rows * size, : full_columns * size].reshape(
            full_rows, size, full_columns, size, 3
        )
        grid[tile_rows[whole], :, tile_columns[whole]] = slots[: len(indices)][whole]
    for slot in numpy.flatnonzero(~whole):
        x, y = int(tile_columns[slot]) * size, int(tile_rows[slot]) * size
        block = pixels[y : y + size, x : x + size]
        block[:] = slots[slot, : block.shape[0], : block.shape[1]]
    return [(int(row) * size, int(row) * size + size) for row in numpy.unique(tile_rows)]
