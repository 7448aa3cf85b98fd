"""Where a frame was blacked out: the device paints every redaction (a denied window, sensitive text)
solid black into the pixels before the frame is encoded, and records no list of them. The portal finds
those boxes again to outline them for the person, so they see what was hidden and that it was.

Pure: pixels in, boxes out. A cell of ``CELL`` x ``CELL`` pixels counts when every pixel in it is pure
black; neighbouring black cells form a box, kept when they fill their bounding rectangle (a painted box
is a rectangle; a black glyph or icon is not) and are at least two cells each way.
"""

from __future__ import annotations

import numpy
from PIL import Image

from demotrace.geometry import Box

CELL = 8
MIN_CELLS = 2
MIN_FILL = 0.95


def _black_cells(black: numpy.ndarray) -> numpy.ndarray:
    rows, cols = black.shape[0] // CELL, black.shape[1] // CELL
    cells = black[: rows * CELL, : cols * CELL].reshape(rows, CELL, cols, CELL)
    return numpy.asarray(cells.all(axis=(1, 3)))


def _components(cells: numpy.ndarray) -> list[tuple[int, int, int, int, int]]:
    """(top, left, bottom, right, count) in cells of each 4-connected group of black cells."""
    seen = numpy.zeros_like(cells, dtype=bool)
    groups: list[tuple[int, int, int, int, int]] = []
    rows, cols = cells.shape
    for start_row, start_col in zip(*numpy.nonzero(cells), strict=True):
        if seen[start_row, start_col]:
            continue
        stack = [(int(start_row), int(start_col))]
        seen[start_row, start_col] = True
        top, left, bottom, right, count = rows, cols, -1, -1, 0
        while stack:
            row, col = stack.pop()
            count += 1
            top, left, bottom, right = min(top, row), min(left, col), max(bottom, row), max(right, col)
            for r, c in ((row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)):
                if 0 <= r < rows and 0 <= c < cols and cells[r, c] and not seen[r, c]:
                    seen[r, c] = True
                    stack.append((r, c))
        groups.append((top, left, bottom + 1, right + 1, count))
    return groups


def _grown(black: numpy.ndarray, box: Box) -> Box:
    """The box grown pixel by pixel (at most a cell each way) while the next row or column is black:
    cells see a box only to the nearest whole cell."""
    left, top, right, bottom = box.left, box.top, box.right, box.bottom
    for _ in range(CELL):
        if left > 0 and black[top:bottom, left - 1].all():
            left -= 1
        if right < black.shape[1] and black[top:bottom, right].all():
            right += 1
        if top > 0 and black[top - 1, left:right].all():
            top -= 1
        if bottom < black.shape[0] and black[bottom, left:right].all():
            bottom += 1
    return Box(left, top, right, bottom)


def redaction_boxes(image: Image.Image) -> list[Box]:
    """The solid black rectangles of a frame, in pixels, top to bottom."""
    black = numpy.asarray(image.convert("RGB")).max(axis=2) == 0
    boxes = []
    for top, left, bottom, right, count in _components(_black_cells(black)):
        height, width = bottom - top, right - left
        if height < MIN_CELLS or width < MIN_CELLS or count < MIN_FILL * height * width:
            continue
        boxes.append(_grown(black, Box(left * CELL, top * CELL, right * CELL, bottom * CELL)))
    return sorted(boxes, key=lambda box: (box.top, box.left))
