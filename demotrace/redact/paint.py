"""Painting boxes solid black, in memory, before a frame is encoded or written anywhere.

Two painters for the two forms a frame takes: a grab's own BGRX pixels, painted in place (the recorder:
denied windows and sensitive text, with no frame-sized copy), and a Pillow image, painted on a copy (a
frame decoded from the spool, and the OCR worker's result image). Both paint the same boxes, clipped to
the frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy
from PIL import Image, ImageDraw

from demotrace.frames.pixels import SCREEN_BYTES_PER_PIXEL, ScreenPixels
from demotrace.geometry import Box


def _on_frame(boxes: Iterable[Box], width: int, height: int) -> Iterator[Box]:
    """The boxes clipped to a ``width`` x ``height`` frame; those left empty are skipped."""
    frame = Box(0, 0, width, height)
    for box in boxes:
        clipped = box.intersection(frame)
        if not clipped.empty:
            yield clipped


def blackout_pixels(pixels: ScreenPixels, boxes: Iterable[Box]) -> None:
    """Paint ``boxes`` black in place in a grab's BGRX pixels."""
    width, height = pixels.size
    rows = numpy.frombuffer(pixels.writable(), numpy.uint8).reshape(height, width * SCREEN_BYTES_PER_PIXEL)
    for box in _on_frame(boxes, width, height):
        rows[box.top : box.bottom, box.left * SCREEN_BYTES_PER_PIXEL : box.right * SCREEN_BYTES_PER_PIXEL] = 0


def blackout_image(image: Image.Image, boxes: Iterable[Box]) -> Image.Image:
    """A copy of the image with every box filled with solid black."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for box in _on_frame(boxes, image.width, image.height):
        draw.rectangle((box.left, box.top, box.right - 1, box.bottom - 1), fill="black")
    return out


__all__ = ["blackout_image", "blackout_pixels"]
