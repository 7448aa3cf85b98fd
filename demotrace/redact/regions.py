"""Which parts of a frame changed since the previous one (pure: pixels in, boxes out, no I/O).

Only what changed is read by OCR again: changed tiles as full-width bands, padded so a text line crossing a
tile edge is read whole; a box found on the previous frame is kept wherever not one of its pixels changed
(a card number that stays on screen stays covered without being read again).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from demotrace.geometry import Box

# Tiles for change detection: big enough that diffing is cheap, small enough that one changed word does
# not send a large area to OCR.
CHANGE_TILE_PX = 64
# Vertical padding of a changed band: a text line whose glyphs touch a changed tile is read whole.
CHANGE_LINE_PAD_PX = 24
# A height x width boolean image (True: that pixel changed).
Mask = np.ndarray[tuple[int, int], np.dtype[np.bool_]]


def changed_regions(
    previous: Image.Image,
    current: Image.Image,
    tile: int = CHANGE_TILE_PX,
    line_pad: int = CHANGE_LINE_PAD_PX,
) -> list[Box]:
    """Full-width bands covering every tile that differs between two frames, padded by ``line_pad`` above
    and below, overlapping bands merged; the whole frame if the sizes differ, ``[]`` if nothing changed.

    Bands span the full width because a sensitive value is read as a line: when only its last digits
    change, its first digits (unchanged) must be read with them.
    """
    if previous.size != current.size:
        return [Box(0, 0, current.width, current.height)]
    return _bands(_changed_pixels(previous, current), tile, line_pad)


def _bands(changed: Mask, tile: int, line_pad: int) -> list[Box]:
    height, width = changed.shape
    changed_rows = changed.any(axis=1)
    tile_rows = -(-height // tile)
    padded = np.zeros(tile_rows * tile, dtype=bool)
    padded[:height] = changed_rows
    changed_tile_rows = padded.reshape(tile_rows, tile).any(axis=1)
    bands: list[Box] = []
    for row in np.flatnonzero(changed_tile_rows).tolist():
        top = max(0, row * tile - line_pad)
        bottom = min(height, (row + 1) * tile + line_pad)
        if bands and top <= bands[-1].bottom:
            bands[-1] = Box(0, bands[-1].top, width, bottom)
        else:
            bands.append(Box(0, top, width, bottom))
    return bands


def _changed_pixels(previous: Image.Image, current: Image.Image) -> Mask:
    """A height x width mask of the pixels that differ (same-size frames)."""
    before = np.asarray(previous.convert("RGB"))
    after = np.asarray(current.convert("RGB"))
    differs = before != after
    # OR of the three channel planes: reductions over a 3-wide axis (any, max) are ~13x slower.
    changed: Mask = differs[:, :, 0] | differs[:, :, 1] | differs[:, :, 2]
    return changed


def unchanged_boxes(previous: Image.Image, current: Image.Image, boxes: Iterable[Box]) -> list[Box]:
    """The boxes under which not one pixel changed: whatever they hid on the previous frame is still
    there, so they stay painted without trusting a second OCR read to find it again."""
    if previous.size != current.size:
        return []
    return _untouched(_changed_pixels(previous, current), boxes)


def _untouched(changed: Mask, boxes: Iterable[Box]) -> list[Box]:
    return [box for box in boxes if not changed[box.top : box.bottom, box.left : box.right].any()]


def regions_to_read(
    image: Image.Image, previous_image: Image.Image | None, previous_boxes: Iterable[Box]
) -> tuple[list[Box], list[Box]]:
    """What to read of ``image`` (the whole frame without a previous one of the same size, else the
    changed bands) and which of the previous frame's boxes to keep as they are."""
    if previous_image is None or previous_image.size != image.size:
        return [Box(0, 0, image.width, image.height)], []
    changed = _changed_pixels(previous_image, image)
    return _bands(changed, CHANGE_TILE_PX, CHANGE_LINE_PAD_PX), _untouched(changed, previous_boxes)


__all__ = ["CHANGE_LINE_PAD_PX", "CHANGE_TILE_PX", "changed_regions", "regions_to_read", "unchanged_boxes"]
