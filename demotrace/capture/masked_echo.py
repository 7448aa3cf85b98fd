"""Masked echo: did the keys just typed draw a row of identical mask glyphs (``*``, ``•``, ``●`` …)?

A pure decision over two greyscale crops of the same screen area — ``before`` (at the first key of the
typing) and ``after`` (a few keys later, once the echo has rendered) — and the characters typed since
``before``. Nothing here grabs, stores or writes anything.

How it reads the pixels:

1. Where the typing landed: the pixels that changed (``CHANGE_LEVEL``), grouped into lines (runs of
   changed rows) and, within a line, into runs of changed columns. Each run is read on its own, so an
   unrelated change elsewhere in the area (a clock, a live preview) does not spoil the reading.
2. Ink: the distance of each pixel of ``after`` from the run's background (its most common grey), so
   dark-on-light and light-on-dark read alike; faint anti-aliasing below ``NOISE_LEVEL`` is ignored.
3. Thin lines are wiped: a thin (at most ``CARET_MAX_WIDTH`` px) run of tall columns is the insertion
   cursor (it blinks and moves) or the side of a border, a thin run of rows across the whole ink is a
   border or a focus ring (it changes when the focus leaves the field).
4. Glyphs: mask glyphs often touch (asterisks and circles do at small sizes), so glyphs are not cut at
   column gaps but at a *pitch*: the smallest pitch (``MIN_PITCH`` … ``MAX_PITCH``) at which every cell
   matches the first one, each cell free to shift by one pixel (fractional advances). Cells are
   compared on their anti-aliased ink with a tolerance (``GLYPH_TOLERANCE``, relative to the ink), not
   bit for bit. The last cell may be cut short by the end of the ink.
5. The verdict. ``masked``: at least ``MIN_MASK_GLYPHS`` identical glyphs, as many as the characters
   typed (give or take: the first may have been drawn before ``before`` was grabbed, the last may not be
   drawn yet, a few more may have been typed while the echo rendered). ``text``: glyphs were drawn and
   they differ. ``undecided``: nothing (or too little) was drawn, the count does not fit, or the typed
   characters themselves would draw identical glyphs.

The near miss: typing ``aaaa`` or ``1111`` into a plain field draws identical glyphs too. The verdict is
``masked`` only when every way the glyphs can line up with the typed characters covers at least two
characters that look different (``I``, ``l``, ``1`` and ``|`` count as one, so do ``O``, ``0`` and
``o``; spaces draw nothing in plain text and are not counted). Otherwise it is ``undecided`` and the
caller may look again after more keys. The price: a password made of one repeated character is not
recognised by its echo.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

EchoVerdict = Literal["masked", "text", "undecided"]
GreyImage = NDArray[np.uint8]

# A pixel changed between the two crops if its grey moved by more than this (0-255).
CHANGE_LEVEL = 32
# Ink weaker than this fraction of full contrast is anti-aliasing noise.
NOISE_LEVEL = 0.08
# A column holds ink if some pixel in it reaches this fraction of full contrast.
INK_LEVEL = 0.3
# Changed rows this close together belong to one line of text; taller "lines" are not text.
ROW_GAP = 2
MIN_LINE_HEIGHT = 2  # a bullet at a small size is 2-3 px tall
MAX_LINE_HEIGHT = 120
# Changed columns this far apart (at least; a line's height if taller) are separate runs.
MIN_COLUMN_GAP = 8
MAX_RUN_WIDTH = 1600  # a longer run is not the echo of a few keys
# Thin lines are wiped before glyphs are read: at most this thick, and across this share of the ink's
# width (a border) or down this share of its height (the caret, a border's sides).
CARET_MAX_WIDTH = 2
LINE_SHARE = 0.9
CARET_MIN_HEIGHT = 0.7
MIN_LINE_LENGTH = 8  # px: shorter strokes are parts of glyphs (a bullet is a few px square)
# Glyph pitches tried (px, in steps of a quarter pixel).
MIN_PITCH = 3.0
MAX_PITCH = 64.0
PITCH_STEP = 0.25
POSITION_JITTER = 0.5
_JITTERS = (0.0, -0.25, 0.25, -0.5, 0.5)
_PAD = 2
# Two cells show the same glyph if their ink differs by at most this fraction of the larger ink.
GLYPH_TOLERANCE = 0.3
MIN_MASK_GLYPHS = 3
# How far the glyph count may trail (drawn before `before`, not drawn yet) or lead (typed while the
# echo rendered) the characters typed.
GLYPHS_BEHIND = 2
GLYPHS_AHEAD = 4  # and as many again as were typed: the grab may come late on a busy machine
# Characters that may look the same in a plain field.
LOOKALIKES = ("Il1|", "O0o")
_LOOKALIKE_OF = {char: group[0] for group in LOOKALIKES for char in group}


@dataclass(frozen=True)
class EchoReading:
    """What the pixels say: the verdict, how many identical glyphs the best run has (0: none), and why."""

    verdict: EchoVerdict
    glyphs: int
    reason: str


@dataclass(frozen=True)
class _Run:
    glyphs: int  # identical glyphs found; 0 when the ink is not a run of identical glyphs
    pitch: float
    ink_width: int


def grey(image: Image.Image) -> GreyImage:
    """A Pillow image as the 2-D greyscale array the detector reads."""
    return np.asarray(image.convert("L"), dtype=np.uint8)


def can_tell_mask_from_text(typed: str, glyphs: int) -> bool:
    """Would ``glyphs`` identical glyphs be impossible in a plain field, whichever typed characters they
    echo? They may start at any of the first ``GLYPHS_BEHIND + 1`` characters typed."""
    for start in range(GLYPHS_BEHIND + 1):
        echoed = typed[start : start + glyphs]
        looks = {_LOOKALIKE_OF.get(char, char) for char in echoed if not char.isspace()}
        if len(looks) < 2:
            return False
    return True


def glyph_count_fits(glyphs: int, typed_count: int) -> bool:
    return typed_count - GLYPHS_BEHIND <= glyphs <= 2 * typed_count + GLYPHS_AHEAD


def read_masked_echo(before: GreyImage, after: GreyImage, typed: str) -> EchoReading:
    """Is what appeared between ``before`` and ``after`` a masked echo of ``typed``? See the module
    docstring. Both crops must show the same area (same shape); ``typed`` is the text typed since
    ``before`` was grabbed (printable characters, backspaces applied)."""
    if before.shape != after.shape or before.ndim != 2:
        return EchoReading("undecided", 0, "the two crops do not show the same area")
    changed = np.abs(after.astype(np.int16) - before.astype(np.int16)) > CHANGE_LEVEL
    if not changed.any():
        return EchoReading("undecided", 0, "nothing was drawn")
    runs = [run for rows, columns in _changed_runs(changed) if (run := _read_run(after[rows, columns]))]
    identical = sorted((run for run in runs if run.glyphs >= 2), key=lambda run: -run.glyphs)
    for run in identical:
        if run.glyphs < MIN_MASK_GLYPHS or not glyph_count_fits(run.glyphs, len(typed)):
            continue
        if not can_tell_mask_from_text(typed, run.glyphs):
            return EchoReading("undecided", run.glyphs, "the typed characters would look alike as text")
        return EchoReading("masked", run.glyphs, f"{run.glyphs} identical glyphs, {run.pitch:g} px apart")
    if any(run.glyphs == 0 and run.ink_width >= 2 * MIN_PITCH for run in runs):
        return EchoReading("text", 0, "the glyphs drawn differ")
    best = identical[0].glyphs if identical else 0
    return EchoReading("undecided", best, "too few glyphs, or not as many as the keys typed")


def _spans(flags: NDArray[np.bool_], gap: int) -> Iterator[tuple[int, int]]:
    """[start, end) runs of True, joined across gaps of at most ``gap`` False."""
    indices = np.flatnonzero(flags)
    if indices.size == 0:
        return
    breaks = np.flatnonzero(np.diff(indices) > gap + 1)
    starts = np.concatenate(([indices[0]], indices[breaks + 1]))
    ends = np.concatenate((indices[breaks], [indices[-1]])) + 1
    yield from zip(starts.tolist(), ends.tolist(), strict=True)


def _changed_runs(changed: NDArray[np.bool_]) -> Iterator[tuple[slice, slice]]:
    for top, bottom in _spans(np.any(changed, axis=1), ROW_GAP):
        height = bottom - top
        if not MIN_LINE_HEIGHT <= height <= MAX_LINE_HEIGHT:
            continue
        line = changed[top:bottom]
        for left, right in _spans(np.any(line, axis=0), max(MIN_COLUMN_GAP, height)):
            if right - left <= MAX_RUN_WIDTH:
                yield slice(top, bottom), slice(left, right)


def _read_run(pixels: GreyImage) -> _Run | None:
    """The ink of one changed run: a row of identical glyphs (how many), or something else."""
    background = int(np.bincount(pixels.ravel(), minlength=256).argmax())
    ink = (np.abs(pixels.astype(np.float32) - np.float32(background)) / np.float32(255.0)).astype(np.float32)
    ink[ink < NOISE_LEVEL] = 0.0
    body = _without_lines(ink)
    if body is None:
        return None
    width = body.shape[1]
    longest = min(MAX_PITCH, width / 2)
    for pitch in np.arange(MIN_PITCH, longest + PITCH_STEP / 2, PITCH_STEP).tolist():
        glyphs = _identical_cells(body, pitch)
        if glyphs >= 2:
            return _Run(glyphs, pitch, width)
    return _Run(0, 0.0, width)


def _thin_runs(flags: NDArray[np.bool_], most: int) -> NDArray[np.bool_]:
    """The True entries that are in runs of at most ``most``."""
    thin = np.zeros_like(flags)
    for start, end in _spans(flags, 0):
        if end - start <= most:
            thin[start:end] = True
    return thin


def _without_lines(ink: NDArray[np.float32]) -> NDArray[np.float32] | None:
    """The ink, cropped to its box, once thin lines are wiped: the caret (it blinks and moves), and a
    field's border or focus ring (it changes when focus moves). Glyphs are never thin lines across the
    whole box, and a line wiped through every glyph alike keeps them alike."""
    ink = ink.copy()
    for _ in range(3):  # wiping a ring's sides shrinks the box; the caret then spans it
        inked = ink >= INK_LEVEL
        rows, columns = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
        if columns.size == 0:
            return None
        ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        inked = inked[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        height, width = inked.shape
        across = _thin_runs(inked.sum(axis=1) >= max(LINE_SHARE * width, MIN_LINE_LENGTH), CARET_MAX_WIDTH)
        down = _thin_runs(
            inked.sum(axis=0) >= max(CARET_MIN_HEIGHT * height, MIN_LINE_LENGTH), CARET_MAX_WIDTH
        )
        if not across.any() and not down.any():
            return ink
        ink[across] = 0.0
        ink[:, down] = 0.0
    return ink


def _distance(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    mass = max(float(a.sum()), float(b.sum()), 1e-6)
    return float(np.abs(a - b).sum()) / mass


def _cell_at(padded: NDArray[np.float32], x: float, width: int) -> NDArray[np.float32]:
    """``width`` columns starting at fractional column ``x`` (of the unpadded body), interpolated."""
    x += _PAD
    left = math.floor(x)
    part = x - left
    cell = padded[:, left : left + width]
    if part == 0.0:
        return cell
    return (1.0 - part) * cell + part * padded[:, left + 1 : left + 1 + width]


def _identical_cells(body: NDArray[np.float32], pitch: float) -> int:
    """How many glyphs, ``pitch`` columns apart and each matching the first, make up ``body``; 0 if
    some cell does not match.

    Glyph k sits at k × pitch, give or take ``POSITION_JITTER`` (renderers round positions); cells are
    sampled at fractional columns (linear interpolation), so copies anti-aliased at different sub-pixel
    phases still match. The last cell must hold a whole glyph (but for the columns a caret cut may have
    taken), so a wrong pitch cannot count a sliver of ink as one more glyph."""
    width = body.shape[1]
    cell_width = max(1, math.floor(pitch))
    reference = body[:, :cell_width]
    inked = np.flatnonzero(reference.max(axis=0) >= INK_LEVEL)
    if inked.size == 0:
        return 0
    glyph_width = int(inked[-1]) + 1
    padded = np.pad(body, ((0, 0), (_PAD, _PAD + cell_width)))
    count = 1
    while (expected := count * pitch) < width:
        best = min(
            _distance(reference, _cell_at(padded, expected + jitter, cell_width)) for jitter in _JITTERS
        )
        if best > GLYPH_TOLERANCE:
            return 0
        count += 1
    if width - (count - 1) * pitch < glyph_width - CARET_MAX_WIDTH - POSITION_JITTER:
        return 0
    return count


__all__ = [
    "EchoReading",
    "EchoVerdict",
    "GreyImage",
    "can_tell_mask_from_text",
    "glyph_count_fits",
    "grey",
    "read_masked_echo",
]
