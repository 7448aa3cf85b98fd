"""A 64-bit signature per tile of a screenshot: what the encoder keeps of a delta's base instead of it.

A delta needs to know which tiles changed since its base, never the base's pixels (its tiles come from
the new frame). Keeping the base frame itself held a third 8 MB frame buffer resident in the recorder
for the whole session (bench/record.py: shmem 24.7 MiB = three 1080p buffers); its signatures take
64 KB, and the buffer goes back to the grab pool as soon as the frame is encoded.

Each 8-byte word of a tile is salted by its place in the tile, mixed (multiply by an odd constant,
xor-shift, multiply: a bijection of 64-bit words, so a tile with one changed word always gets a new
signature), and the tile's words are summed. A change of several words escapes only if the sums of
their mixed values happen to agree (about 2^-64 per changed tile); a tile that did escape would show its
base's pixels, which were scrubbed like every frame's, never anything unscrubbed. Cost: ~5 ms of CPU per
1080p frame (against ~1 ms for comparing two frames), in bands of ``tile_size`` rows so no temporary is
larger than a band.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy

from demotrace.frames.pixels import SCREEN_BYTES_PER_PIXEL, PixelBuffer, tile_grid

_WORD = 8  # bytes
_MIX_1 = numpy.uint64(0x9E3779B97F4A7C15)
_MIX_2 = numpy.uint64(0xBF58476D1CE4E5B9)
_SHIFT = numpy.uint64(31)
_SALT_SEED = 0x5EED_71E5  # fixed: signatures of one encoder must agree from frame to frame


@dataclass(frozen=True)
class TileSignatures:
    """The signatures of a screenshot's tiles, row-major (``rows`` x ``columns``)."""

    size: tuple[int, int]
    tile_size: int
    values: numpy.ndarray

    def changed_tiles(self, newer: TileSignatures) -> list[int]:
        """Indices (row-major) of the tiles whose signature differs in ``newer`` (same size and tiling)."""
        if newer.size != self.size or newer.tile_size != self.tile_size:
            raise ValueError("signatures of different sizes or tilings cannot be compared")
        return [int(index) for index in numpy.flatnonzero(self.values != newer.values)]

    def same(self, newer: TileSignatures) -> bool:
        return newer.size == self.size and bool(numpy.array_equal(self.values, newer.values))


def can_sign(width: int, tile_size: int, bytes_per_pixel: int = SCREEN_BYTES_PER_PIXEL) -> bool:
    """Whether rows and tiles fall on 8-byte words (BGRX with tiles a multiple of 8 px always do)."""
    return (width * bytes_per_pixel) % _WORD == 0 and (tile_size * bytes_per_pixel) % _WORD == 0


@functools.cache
def _salt(rows: int, row_words: int) -> numpy.ndarray:
    generator = numpy.random.default_rng(_SALT_SEED)
    salt = generator.integers(0, 2**63, size=(rows, row_words), dtype=numpy.uint64) << numpy.uint64(1)
    salt.flags.writeable = False
    return salt


def tile_signatures(data: PixelBuffer, size: tuple[int, int], tile_size: int) -> TileSignatures:
    """The signatures of BGRX pixels' tiles (``can_sign`` must hold for the width and tile size)."""
    width, height = size
    if not can_sign(width, tile_size):
        raise ValueError(f"a {width} px wide frame with {tile_size} px tiles does not fall on 8-byte words")
    columns, rows = tile_grid(width, height, tile_size)
    row_words = width * SCREEN_BYTES_PER_PIXEL // _WORD
    tile_words = tile_size * SCREEN_BYTES_PER_PIXEL // _WORD
    padded_words = columns * tile_words
    words = numpy.frombuffer(data, numpy.uint64).reshape(height, row_words)
    # One salt per word of a band; padding words (past the right edge) are zeros in every frame.
    salt = _salt(tile_size, padded_words)
    band = numpy.zeros((tile_size, padded_words), numpy.uint64)
    values = numpy.empty((rows, columns), numpy.uint64)
    for row in range(rows):
        top = row * tile_size
        lines = min(tile_size, height - top)
        band[:lines, :row_words] = words[top : top + lines]
        if lines < tile_size:
            band[lines:] = 0
        mixed = band ^ salt
        mixed *= _MIX_1
        mixed ^= mixed >> _SHIFT
        mixed *= _MIX_2
        values[row] = mixed.reshape(tile_size, columns, tile_words).sum(axis=(0, 2), dtype=numpy.uint64)
    return TileSignatures(size, tile_size, values)
