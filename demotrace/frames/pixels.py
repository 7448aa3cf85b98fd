"""Screen pixels as grabbed, and the tile grid laid over them.

The encoder works on ``ScreenPixels``: the grab's own BGRX bytes. A 1080p screenshot stays one
8 MB buffer from the grab to the spool (change detection compares it in place, the chain keeps it as
the next base, and only changed tiles or a key frame become Pillow images), instead of a Pillow image
plus a byte copy per stage. Pillow images are accepted too and converted first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy
from PIL import Image

# Screen pixels are BGRX, 4 bytes each, as X11 grabs (and mss) give them; the 4th byte is not a colour.
SCREEN_BYTES_PER_PIXEL = 4
# Where pixels live: a grab's own bytearray, or a reused buffer (a memoryview of a mapping).
PixelBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview


@dataclass(frozen=True)
class ScreenPixels:
    """A screenshot as grabbed: raw BGRX bytes, row-major, 4 per pixel (the 4th is unused).

    The encoder keeps its tiles' signatures as the base of the next delta (the buffer itself only where
    rows do not fall on 8-byte words), so whoever passes one must not change it once encoded (the
    recorder paints blackouts and OCR boxes into it *before* encoding).

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

    def grey_array(self, out: numpy.ndarray | None = None, rows: int = 64) -> numpy.ndarray:
        """The pixels' grey levels (Pillow's "L" weights), a (height, width) uint8 array (written into
        ``out`` when it has that shape): converted a band of ``rows`` at a time, so no frame-sized RGB
        copy is ever made."""
        shape = (self.height, self.width)
        grey = out if out is not None and out.shape == shape else numpy.empty(shape, numpy.uint8)
        stride = self.width * SCREEN_BYTES_PER_PIXEL
        view = memoryview(self.data)
        for top in range(0, self.height, rows):
            bottom = min(self.height, top + rows)
            band = view[top * stride : bottom * stride]
            image = Image.frombuffer("RGB", (self.width, bottom - top), band, "raw", "BGRX", 0, 1)  # type: ignore[arg-type]
            grey[top:bottom] = numpy.asarray(image.convert("L"))
        return grey

    def grey_bands(self, rows: int = 64) -> Iterator[bytes]:
        """The grey levels of ``grey_array``, as bytes a band of ``rows`` at a time (top to bottom): for
        a reader that takes them in order, no frame-sized grey copy either."""
        stride = self.width * SCREEN_BYTES_PER_PIXEL
        view = memoryview(self.data)
        for top in range(0, self.height, rows):
            bottom = min(self.height, top + rows)
            band = view[top * stride : bottom * stride]
            image = Image.frombuffer("RGB", (self.width, bottom - top), band, "raw", "BGRX", 0, 1)  # type: ignore[arg-type]
            yield image.convert("L").tobytes()

    def rgb_array(self) -> numpy.ndarray:
        """The pixels as a (height, width, 3) RGB view of the buffer (no copy; read-only use)."""
        bgrx = numpy.frombuffer(self.data, numpy.uint8).reshape(
            self.height, self.width, SCREEN_BYTES_PER_PIXEL
        )
        return bgrx[:, :, 2::-1]


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """(columns, rows) of tiles covering an image; edge tiles may stick out past the image."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)


def tile_box(index: int, columns: int, tile_size: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of tile ``index`` (row-major) in a grid ``columns`` wide."""
    x = (index % columns) * tile_size
    y = (index // columns) * tile_size
    return x, y, x + tile_size, y + tile_size
