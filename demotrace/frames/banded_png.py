"""A whole screen as PNG, compressed in bands of rows, so the next frame of a chain recompresses only
the bands its tiles touch.

A PNG holds its pixels in one zlib stream. Here each band of rows is compressed on its own and ends on
a byte boundary (a full flush, as parallel gzip tools cut their streams), and the stream is the bands'
bytes one after the other, an empty last block and the Adler-32 of everything, combined from the
bands' own. A delta that changes a few tiles invalidates only their bands; the others are reused as
they are. Every row has PNG filter 0 (none), so a band's bytes depend on its own rows only. The result
is an ordinary PNG: any reader decodes it.

The bands are deflated by zlib-ng (the zlib format, SIMD matchers): measured on the demo session's
real 1080p frames (``bench/build.py --encodings``), level 6 in 16-row bands gives ~52 KB per screen
(Pillow's whole-image PNG at level 6: ~49 KB) in ~6 ms for all 68 bands, where the standard zlib takes
~17 ms; a delta dirties ~14 % of the bands, so <1 ms of compression per frame of a chain. Lossless
WebP is slower than Pillow's PNG even at effort 0, and zlib-ng's levels 1-4 save little time for
~5-60 % more bytes.
"""

from __future__ import annotations

import struct
import zlib

import numpy
from zlib_ng import zlib_ng

BAND_ROWS = 16  # the recorder's tile size: a tile row is one band
PNG_LEVEL = 6

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_RGB_HEADER = struct.Struct(">IIBBBBB")  # width, height, bit depth 8, colour type 2 (RGB), 0, 0, 0
_ZLIB_HEADER = b"\x78\x9c"  # deflate, 32 KiB window, default level (the level bits are only a hint)
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a last fixed-Huffman block with no data: ends the deflate stream
_ADLER_BASE = 65521


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def png_of_stream(width: int, height: int, zlib_stream: bytes) -> bytes:
    """An 8-bit RGB PNG around a zlib stream of its filtered rows."""
    header = _PNG_RGB_HEADER.pack(width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            png_chunk(b"IHDR", header),
            png_chunk(b"IDAT", zlib_stream),
            png_chunk(b"IEND", b""),
        )
    )


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of A + B from the Adler-32s of A and B and the length of B (zlib's adler32_combine,
    which Python's zlib does not expose)."""
    remainder = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (remainder * sum1) % _ADLER_BASE
    sum1 = (sum1 + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + (first >> 16) + (second >> 16) + _ADLER_BASE - remainder) % _ADLER_BASE
    return sum1 | (sum2 << 16)


class BandedPng:
    """RGB pixels (a (height, width, 3) uint8 array, owned and changed in place) and the compressed
    bands of their PNG; ``changed(top, bottom)`` after writing into ``pixels``, ``png()`` for the bytes.
    """

    def __init__(self, pixels: numpy.ndarray, *, level: int = PNG_LEVEL, band_rows: int = BAND_ROWS) -> None:
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != numpy.uint8:
            raise ValueError(f"expected a (height, width, 3) uint8 array, not {pixels.shape} {pixels.dtype}")
        self.pixels = pixels
        self.height, self.width = int(pixels.shape[0]), int(pixels.shape[1])
        self._level = level
        self._band_rows = band_rows
        bands = -(-self.height // band_rows)
        # Per band: its deflate bytes (ending on a full flush), the Adler-32 and length of its raw rows.
        self._bands: list[tuple[bytes, int, int] | None] = [None] * bands
        self._png: bytes | None = None

    def changed(self, top: int, bottom: int) -> None:
        """Rows ``top`` to ``bottom`` (exclusive) of ``pixels`` were written: their bands go stale."""
        top, bottom = max(0, top), min(self.height, bottom)
        if top >= bottom:
            return
        for band in range(top // self._band_rows, (bottom - 1) // self._band_rows + 1):
            self._bands[band] = None
        self._png = None

    def png(self) -> bytes:
        """The PNG of the pixels now; only the stale bands are compressed again."""
        if self._png is None:
            stream = [_ZLIB_HEADER]
            adler, length = 1, 0  # the Adler-32 of nothing is 1
            for index, band in enumerate(self._bands):
                if band is None:
                    band = self._bands[index] = self._compress(index)
                data, band_adler, band_length = band
                stream.append(data)
                adler = adler32_combine(adler, band_adler, band_length)
                length += band_length
            stream += (_FINAL_EMPTY_BLOCK, struct.pack(">I", adler))
            self._png = png_of_stream(self.width, self.height, b"".join(stream))
        return self._png

    def _compress(self, band: int) -> tuple[bytes, int, int]:
        rows = self.pixels[band * self._band_rows : (band + 1) * self._band_rows]
        raw = numpy.zeros((rows.shape[0], self.width * 3 + 1), numpy.uint8)  # column 0: filter "none"
        raw[:, 1:] = rows.reshape(rows.shape[0], self.width * 3)
        data = raw.tobytes()
        compressor = zlib_ng.compressobj(self._level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
        deflated = compressor.compress(data) + compressor.flush(zlib_ng.Z_FULL_FLUSH)
        return deflated, zlib_ng.adler32(data), len(data)
