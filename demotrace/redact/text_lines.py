"""Text lines on a screen found from the pixels alone, before any OCR (pure numpy: pixels in, boxes out).

Screen text is crisp: every glyph stroke makes a sharp step between horizontally neighbouring pixels,
whatever the colours (dark on light, light on dark, a selected row). Those steps are the "ink". A
recursive XY cut splits a region at blank rows, then at blank columns, until every piece is one line
high; pieces on one row that are closer than a column gap are joined again into one line, so a line
holds its words together (a card's four groups, an email and the word before it).

Each line keeps which of its columns hold ink: where OCR drops a piece of a word (``ja`` of
``jane.doe@…``, a card's first group), the ink still shows it was there, and the cover of a sensitive
word spreads over it (``screen.cover_line``).

A piece of line height may still hold two things stacked, glued by one touching row: a terminal's block
cursor under (or beside) a prompt whose descender reaches the bottom of its cell. Read whole, OCR misreads
the prompt and the login in it. A glyph's strokes hold ink in a shared column from row to row, so the
piece is cut at a row that shares no inked column with the row above (``_stacked_parts``).

A piece that stays taller than a line after every cut (a photo, packed lines with no blank row between
them) is returned as a block, which the caller reads in sparse mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from demotrace.geometry import Box
from demotrace.redact.lines import COLUMN_GAP_LINE_HEIGHTS

# A step of this many grey levels between horizontal neighbours is a glyph edge (anti-aliased 12 px text
# on white steps by 60 or more; flat UI gradients by a few).
EDGE_LEVEL = 32
# Taller pieces are cut further or read as blocks: a 26 pt line with descenders is ~40 px high.
MAX_LINE_PX = 44
# Shorter ink is a rule, a dot or a cursor bar, never a readable value (a 6x13 bitmap digit is 8 px).
MIN_LINE_PX = 5
# Inside a tall piece, a blank column this wide separates two things (a window border from its text).
BLOCK_COLUMN_GAP_PX = 3
# A row with fewer edges than this share of the piece's busiest row may separate two packed lines.
VALLEY_SHARE = 0.12
# A column of a tall piece with ink in this share of its rows is a rule, not text.
RULE_SHARE = 0.9
MAX_DEPTH = 8
# Rows of a frame turned into edges at a time.
EDGE_BAND_ROWS = 64

Edges = np.ndarray[tuple[int, int], np.dtype[np.bool_]]
Grey = np.ndarray[tuple[int, int], np.dtype[np.uint8]]
Columns = np.ndarray[tuple[int], np.dtype[np.bool_]]


@dataclass(frozen=True)
class TextLine:
    """A line (or a block: ``block`` True) in frame coordinates, as the pixels to crop; ``ink[i]``:
    column ``box.left + i`` holds ink."""

    box: Box
    ink: Columns
    block: bool = False


def glyph_edges(grey: Grey) -> Edges:
    """Where a pixel differs sharply from its right-hand neighbour (the last column never)."""
    edges = np.zeros(grey.shape, dtype=bool)
    # Band by band: the temporaries are a band's, never a frame's (4 MB less at the OCR worker's peak
    # on a whole new 1080p screen).
    for top in range(0, grey.shape[0], EDGE_BAND_ROWS):
        band = grey[top : top + EDGE_BAND_ROWS]
        left, right = band[:, :-1], band[:, 1:]
        # |a - b| in uint8 as max - min: no int16 copies.
        step = np.maximum(left, right)
        step -= np.minimum(left, right)
        np.greater_equal(step, EDGE_LEVEL, out=edges[top : top + EDGE_BAND_ROWS, :-1])
    return edges


def _any(piece: Edges, axis: int) -> Columns:
    """Along ``axis``: is any entry set (rows: axis 1, columns: axis 0)."""
    found: Columns = np.logical_or.reduce(piece, axis=axis)
    return found


def _runs(flags: Columns, join_gap: int) -> list[tuple[int, int]]:
    """Spans of True, joined across gaps of fewer than ``join_gap`` False entries."""
    padded = np.concatenate(([False], flags, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    spans = list(zip(changes[::2].tolist(), changes[1::2].tolist(), strict=True))
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and start - joined[-1][1] < join_gap:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


def _valleys(edges: Edges) -> list[tuple[int, int]]:
    """Row spans of a piece with no blank row, cut at rows much emptier than its busiest one."""
    counts = edges.sum(axis=1)
    busy = counts > VALLEY_SHARE * counts.max()
    return [(start, end) for start, end in _runs(busy, 1) if end - start >= MIN_LINE_PX]


@dataclass
class _Cuts:
    lines: list[Box]
    blocks: list[Box]
    rules: list[Box]  # vertical rules (borders): lines never join across one


def _cut(edges: Edges, box: Box, cuts: _Cuts, depth: int) -> None:
    piece = edges[box.top : box.bottom, box.left : box.right]
    row_ink = _any(piece, 1)
    for top, bottom in _runs(row_ink, 1):
        height = bottom - top
        if height < MIN_LINE_PX:
            continue
        rows = piece[top:bottom]
        columns = _any(rows, 0)
        gap = max(2, round(COLUMN_GAP_LINE_HEIGHTS * height))
        if height > MAX_LINE_PX:
            # Columns with ink in nearly every row of a tall piece are rules (window and field borders):
            # left in, they glue a border to the text beside it, which OCR then reads as "|" or "l".
            rule = rows.mean(axis=0) >= RULE_SHARE
            cuts.rules += [
                Box(box.left + left, box.top + top, box.left + right, box.top + bottom)
                for left, right in _runs(rule, 1)
            ]
            columns &= ~rule
            gap = BLOCK_COLUMN_GAP_PX
        for left, right in _runs(columns, gap):
            found = Box(box.left + left, box.top + top, box.left + right, box.top + bottom)
            if found.height <= MAX_LINE_PX:
                if found.width <= 2:  # two edge columns wide: a rule or a lone "l", never a value
                    continue
                parts = _stacked_parts(edges, found)
                if len(parts) > 1 and depth < MAX_DEPTH:
                    for part in parts:
                        _cut(edges, part, cuts, depth + 1)
                else:
                    cuts.lines.append(found)
            elif found.width <= 2:
                cuts.rules.append(found)
            elif found != box and depth < MAX_DEPTH:
                _cut(edges, found, cuts, depth + 1)
            else:
                _split_packed(edges, found, cuts)


def _stacked_parts(edges: Edges, box: Box) -> list[Box]:
    """``box`` cut at every row that shares no inked column with the row above, where each part keeps at
    least a line's minimum height; one part if there is no such row."""
    piece = edges[box.top : box.bottom, box.left : box.right]
    crossed = _any(piece[1:] & piece[:-1], 1)
    cuts = [box.top]
    for row in (np.flatnonzero(~crossed) + 1).tolist():
        if box.top + row - cuts[-1] >= MIN_LINE_PX and box.height - row >= MIN_LINE_PX:
            cuts.append(box.top + row)
    cuts.append(box.bottom)
    return [Box(box.left, top, box.right, bottom) for top, bottom in pairwise(cuts)]


def _split_packed(edges: Edges, box: Box, cuts: _Cuts) -> None:
    """A piece with no blank row or column left: packed lines cut at their valleys, else a block."""
    rows = _valleys(edges[box.top : box.bottom, box.left : box.right])
    if len(rows) > 1 and all(end - start <= MAX_LINE_PX for start, end in rows):
        cuts.lines += [Box(box.left, box.top + start, box.right, box.top + end) for start, end in rows]
    else:
        cuts.blocks.append(box)


def _join_rows(boxes: list[Box], rules: list[Box]) -> list[Box]:
    """Pieces on one row (overlapping by half the lower one's height) closer than a column gap and with
    no rule between them, joined."""
    joined: list[Box] = []
    for box in sorted(boxes, key=lambda b: (b.left, b.top)):
        for index, other in enumerate(joined):
            overlap = min(box.bottom, other.bottom) - max(box.top, other.top)
            height = max(box.height, other.height)
            gap = box.left - other.right
            between = Box(other.right, max(box.top, other.top), box.left, min(box.bottom, other.bottom))
            if (
                overlap * 2 >= min(box.height, other.height)
                and gap <= COLUMN_GAP_LINE_HEIGHTS * height
                and not any(rule.intersects(between) for rule in rules)
            ):
                merged = Box(
                    min(box.left, other.left),
                    min(box.top, other.top),
                    max(box.right, other.right),
                    max(box.bottom, other.bottom),
                )
                if merged.height <= MAX_LINE_PX:
                    joined[index] = merged
                    break
        else:
            joined.append(box)
    return sorted(joined, key=lambda b: (b.top, b.left))


def ink_columns(grey: Grey, box: Box) -> Columns:
    """Which columns of a line's pixels (``box``, as cropped: see :func:`ink_box`) hold ink: a pixel
    that differs from the line's background (its commonest level, the median) as much as a glyph
    edge. Exact to the pixel, anti-aliased edges included."""
    crop = grey[box.top : box.bottom, box.left : box.right]
    background = np.uint8(np.median(crop))
    step = np.maximum(crop, background)
    step -= np.minimum(crop, background)
    return _any(step >= EDGE_LEVEL, 0)


def ink_runs(ink: Columns, left: int, gap: int) -> list[tuple[int, int]]:
    """Spans of ink as (left, right) in frame x, split at blank gaps of ``gap`` columns or more."""
    return [(left + start, left + end) for start, end in _runs(ink, gap)]


def find_lines(edges: Edges, region: Box) -> tuple[list[Box], list[Box]]:
    """The text lines and the blocks (taller pieces no cut could split) inside ``region`` of an edge
    map, in its coordinates."""
    cuts = _Cuts([], [], [])
    _cut(edges, region, cuts, 0)
    return _join_rows(cuts.lines, cuts.rules), cuts.blocks


def ink_box(box: Box, width: int) -> Box:
    """A line's box as pixels to crop: an edge column marks a step between x and x + 1, so the ink of
    the last one reaches a pixel further right. Nothing around it is taken (a focus ring or a border
    beside the text would make the same line look new)."""
    return Box(box.left, box.top, min(width, box.right + 1), box.bottom)


def lines_in(grey: Grey, region: Box) -> list[TextLine]:
    """The text lines and blocks in ``region`` of a grey frame, in frame coordinates, each as the box
    to crop (:func:`ink_box`) with its ink columns (edges are computed for the region only)."""
    edges = glyph_edges(grey[region.top : region.bottom, region.left : region.right])
    lines, blocks = find_lines(edges, Box(0, 0, region.width, region.height))
    found: list[TextLine] = []
    for boxes, block in ((lines, False), (blocks, True)):
        for box in boxes:
            crop = ink_box(box.shifted(region.left, region.top), region.right)
            found.append(TextLine(crop, ink_columns(grey, crop), block))
    return found


__all__ = [
    "EDGE_LEVEL",
    "MAX_LINE_PX",
    "TextLine",
    "find_lines",
    "glyph_edges",
    "ink_box",
    "ink_columns",
    "ink_runs",
    "lines_in",
]
