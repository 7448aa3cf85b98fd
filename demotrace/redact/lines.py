"""Words read off a screen, as text lines (pure: geometry only, no I/O)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from demotrace.geometry import Box

# Words further apart than this many line heights are in different columns.
COLUMN_GAP_LINE_HEIGHTS = 4.0
# A gap narrower than this many line heights, or than this share of the line's median word gap, is a
# space OCR put inside one token (proportional fonts: a space is ~0.3 em; monospace: a whole cell).
SPLIT_TOKEN_GAP_LINE_HEIGHTS = 0.3
SPLIT_TOKEN_GAP_MEDIAN_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class OcrWord:
    text: str
    box: Box
    confidence: float  # Tesseract's 0-100; low-confidence words are still read for secrets


def group_lines(words: Iterable[OcrWord]) -> list[list[OcrWord]]:
    """Words as text lines, each left to right: same row (vertical centres within half a line height of
    the row's first word), and no gap wider than ``COLUMN_GAP_LINE_HEIGHTS`` line heights."""
    rows: list[list[OcrWord]] = []
    for word in sorted(words, key=lambda w: (w.box.top + w.box.bottom, w.box.left)):
        middle = (word.box.top + word.box.bottom) / 2
        if rows:
            anchor = rows[-1][0].box
            anchor_middle = (anchor.top + anchor.bottom) / 2
            if abs(middle - anchor_middle) <= max(anchor.height, word.box.height) / 2:
                rows[-1].append(word)
                continue
        rows.append([word])
    lines: list[list[OcrWord]] = []
    for row in rows:
        row.sort(key=lambda w: w.box.left)
        row_height = line_height(row)
        current = [row[0]]
        for word in row[1:]:
            if word.box.left - current[-1].box.right > COLUMN_GAP_LINE_HEIGHTS * row_height:
                lines.append(current)
                current = [word]
            else:
                current.append(word)
        lines.append(current)
    return lines


def line_height(line: Sequence[OcrWord]) -> float:
    """The median height of the line's words: the unit its gaps are measured in."""
    heights = sorted(word.box.height for word in line)
    return float(max(1, heights[len(heights) // 2]))


def split_token_gap(line: Sequence[OcrWord]) -> float:
    """Gaps between words narrower than this are read as no space in the lenient reading."""
    gaps = sorted(b.box.left - a.box.right for a, b in itertools.pairwise(line))
    median_gap = gaps[len(gaps) // 2] if len(gaps) >= 2 else 0
    return max(SPLIT_TOKEN_GAP_LINE_HEIGHTS * line_height(line), SPLIT_TOKEN_GAP_MEDIAN_SHARE * median_gap)


__all__ = ["OcrWord", "group_lines", "line_height", "split_token_gap"]
