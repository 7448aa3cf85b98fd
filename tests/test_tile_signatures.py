"""The encoder's delta base is its tiles' signatures: every change is still found, tile for tile, and
the frame's buffer goes back to the grab pool once the frame is encoded."""

from __future__ import annotations

import random

from demotrace.frames.delta import changed_tiles_of_pixels
from demotrace.frames.encoder import FrameEncoder
from demotrace.frames.pixels import ScreenPixels
from demotrace.frames.settings import EncodingSettings
from demotrace.frames.tile_signatures import tile_signatures

TILE = 16


def test_a_change_of_any_single_byte_marks_its_own_tile_and_no_other() -> None:
    width, height = 40, 20  # edge tiles cut on the right and at the bottom
    base = bytearray(random.Random(1).randbytes(width * height * 4))
    before = tile_signatures(bytes(base), (width, height), TILE)
    for offset in range(len(base)):
        changed = bytearray(base)
        changed[offset] ^= 1 << (offset % 8)  # every bit position across the bytes
        after = tile_signatures(bytes(changed), (width, height), TILE)
        x, y = (offset // 4) % width, (offset // 4) // width
        assert before.changed_tiles(after) == [(y // TILE) * 3 + x // TILE], offset


def test_signatures_find_the_same_tiles_as_comparing_the_frames() -> None:
    rng = random.Random(7)
    width, height = 320, 200
    frame = bytearray(rng.randbytes(width * height * 4))
    for _ in range(40):
        edited = bytearray(frame)
        for _ in range(rng.randint(1, 6)):  # a few rectangles of new pixels, some a single pixel
            left, top = rng.randrange(width), rng.randrange(height)
            right, bottom = min(width, left + rng.randint(1, 60)), min(height, top + rng.randint(1, 30))
            for row in range(top, bottom):
                start, end = (row * width + left) * 4, (row * width + right) * 4
                edited[start:end] = rng.randbytes(end - start)
        expected = changed_tiles_of_pixels(bytes(frame), bytes(edited), (width, height), TILE)
        found = tile_signatures(bytes(frame), (width, height), TILE).changed_tiles(
            tile_signatures(bytes(edited), (width, height), TILE)
        )
        assert found == expected and expected
        frame = edited


def test_an_encoded_frame_gives_its_buffer_back_at_once() -> None:
    released: list[int] = []
    encoder = FrameEncoder(EncodingSettings(key_codec="png", tile_codec="png"))
    rng = random.Random(3)
    width, height = 256, 128
    content = bytearray(rng.randbytes(width * height * 4))
    for number in range(3):
        content[number * 4096 : number * 4096 + 64] = rng.randbytes(64)
        buffer = bytearray(content)
        pixels = ScreenPixels(buffer, width, height, release=lambda data, n=number: released.append(n))
        encoded = encoder.encode(pixels, (0, 0, width, height), key=False)
        del pixels
        # The buffer is free for the next grab before that grab is taken: the base is not the frame.
        assert released == list(range(number + 1))
        assert encoded.is_key == (number == 0) and (number == 0 or encoded.changed_tiles == 1)
