"""The dataset's images: banded PNGs of rebuilt frames, pixel for pixel what the build wrote before.

Before, a delta frame was rebuilt with Pillow (a copy of its base, each tile cropped and pasted) and
saved as Pillow's PNG at level 6; now its tiles are scattered into the chain's pixels in place and
written as a banded PNG. ``todays_png`` keeps the old path here, as the reference the new images are
decoded against.
"""

from __future__ import annotations

import io
import zlib

import numpy
from PIL import Image

from demotrace.frames.banded_png import BandedPng, adler32_combine
from demotrace.frames.delta import parse_delta
from demotrace.frames.pixels import tile_box, tile_grid
from demotrace.frames.resolver import FrameResolver
from demotrace.frames.settings import AC_POWER_SETTINGS, EncodingSettings
from demotrace.model import Frame
from demotrace.protocol import DELTA_MEDIA_TYPE
from tests.test_frames import encode_all, photo, store_of, typing_session


def decoded(data: bytes) -> numpy.ndarray:
    with Image.open(io.BytesIO(data)) as opened:
        return numpy.asarray(opened.convert("RGB"))


def zlib_stream_of(png: bytes) -> bytes:
    """The IDAT payload of a one-IDAT PNG."""
    start = png.index(b"IDAT") + 4
    return png[start : start + int.from_bytes(png[start - 8 : start - 4], "big")]


def todays_png(frames: list[Frame], index: int) -> bytes:
    """The image the build wrote for ``frames[index]`` before banded PNGs: a key frame as stored; a delta
    rebuilt with Pillow's crop and paste from its key frame and saved as Pillow's PNG, level 6."""
    if frames[index].media_type != DELTA_MEDIA_TYPE:
        return frames[index].data
    key = max(i for i in range(index) if frames[i].media_type != DELTA_MEDIA_TYPE)
    image = Image.open(io.BytesIO(frames[key].data)).convert("RGB")
    for frame in frames[key + 1 : index + 1]:
        payload = parse_delta(frame.data)
        image = image.copy()
        if payload.tiles:
            packed = Image.open(io.BytesIO(payload.tiles_image)).convert("RGB")
            columns, _ = tile_grid(payload.width, payload.height, payload.tile_size)
            pack_columns = max(1, min(len(payload.tiles), columns))
            for slot, tile in enumerate(payload.tiles):
                x, y, _, _ = tile_box(tile, columns, payload.tile_size)
                image.paste(packed.crop(tile_box(slot, pack_columns, payload.tile_size)), (x, y))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def test_a_banded_png_is_an_ordinary_png_of_its_pixels_before_and_after_a_change() -> None:
    rng = numpy.random.default_rng(7)
    pixels = (rng.integers(0, 4, (37, 53, 3)) * 60).astype(numpy.uint8)  # 3 bands, the last one short
    banded = BandedPng(pixels.copy())
    first = banded.png()
    assert numpy.array_equal(decoded(first), pixels)
    zlib.decompress(zlib_stream_of(first))  # a valid zlib stream, Adler-32 included
    banded.pixels[20:22, 5:9] = 255
    pixels[20:22, 5:9] = 255
    banded.changed(20, 22)
    second = banded.png()
    assert second != first
    assert numpy.array_equal(decoded(second), pixels)
    assert zlib.decompress(zlib_stream_of(second)) == b"".join(b"\x00" + row.tobytes() for row in pixels)


def test_only_the_bands_a_change_touches_are_compressed_again() -> None:
    pixels = numpy.zeros((64, 40, 3), numpy.uint8)
    pixels[::3, ::5] = (10, 200, 30)
    banded = BandedPng(pixels.copy())
    before = zlib_stream_of(banded.png())
    banded.pixels[40:41, 0:40] = 99  # in the third of four 16-row bands
    banded.changed(40, 41)
    after = zlib_stream_of(banded.png())
    # Bands 0 and 1 are byte for byte at the start of both streams, band 3 before the end.
    untouched = before[: before.index(b"\x00\x00\xff\xff", before.index(b"\x00\x00\xff\xff") + 4) + 4]
    assert after.startswith(untouched) and len(untouched) > 10
    assert after[-30:-6] == before[-30:-6]


def test_adler32_combine_matches_zlib() -> None:
    first, second = b"screen " * 5000, bytes(range(256)) * 300
    assert adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(
        first + second
    )
    assert adler32_combine(1, zlib.adler32(second), len(second)) == zlib.adler32(second)


def test_resolved_frames_decode_to_exactly_the_pixels_of_todays_images() -> None:
    screens = typing_session(8)
    with_picture = screens[-1].copy()
    with_picture.paste(photo().crop((0, 0, 256, 192)), (320, 192))  # lossy tiles: rebuilt != screen
    screens.append(with_picture)
    screens.append(with_picture)  # identical: a delta without tiles
    for settings in (AC_POWER_SETTINGS, EncodingSettings(tile_size=64, key_codec="png")):
        frames = encode_all(screens, settings, keys={5})  # two chains
        assert {frame.media_type for frame in frames} == {"image/png", DELTA_MEDIA_TYPE}
        resolver = FrameResolver(store_of(frames).get)
        for index, frame in enumerate(frames):
            resolved = resolver.resolve(frame.frame_id)
            assert resolved is not None
            assert numpy.array_equal(decoded(resolved.data), decoded(todays_png(frames, index)))
            if frame.media_type != DELTA_MEDIA_TYPE:
                assert resolved.data == frame.data  # a key frame is reused as stored
        assert resolver.decoded == len(frames)  # each frame decoded once, in order
