"""Screen safeguards: read a frame with OCR, find sensitive text with the typed-text detectors, and
paint it out (solid black) before the frame is encoded or written anywhere.

The pipeline, one function per step:

1. :func:`changed_regions` (pure): which parts of the screen changed since the previous frame, as
   full-width bands of 64 px tiles, padded vertically so a text line crossing a tile edge is whole.
2. :func:`ocr_words` (the only I/O): Tesseract's word boxes for those bands (or the whole frame). The
   image goes to ``tesseract stdin stdout`` over a pipe, never to a file: pytesseract writes every image
   to a temporary file first, which would put unredacted pixels on disk, so it is not used.
3. :func:`group_lines` (pure): words into text lines by geometry, split at wide gaps (columns).
4. :func:`sensitive_words` (pure): the detectors over each line's text, in two readings: as OCR read
   it, and a lenient one that undoes the usual OCR slips on secrets (``,`` for ``.`` in a domain,
   ``l``/``O``/``S`` for ``1``/``0``/``5`` among digits, a space inserted inside a token, a card read
   as ``4111 1111 11111111``: narrow gaps, and gaps between pieces holding digits, are closed). A
   match's character span maps back to the words it touches. The detectors are the screen set
   (``detectors.screen_detectors``): the typed-text ones plus lenient, screen-only ones (IBAN by shape,
   ``@`` look-alikes, key prefixes with confusable characters, random tokens from 12 characters, digit
   runs from 9), since on a screen a false positive costs a box over one word and a miss leaks. A piece
   OCR split off a flagged value (``Jd@Fs2Ga7Ex`` after a key's first half) is flagged with it.
5. :func:`~demotrace.redact.paint.blackout_image`: those words' boxes, with a small margin, filled with black.

:class:`ScreenScrubber` keeps, per stream of frames from one monitor, the previous raw frame and its
boxes: only changed bands are read again, and a previous box is kept wherever its pixels did not change
(a card number that stays on screen stays covered without being read again).

Measured (``bench/redaction.py --ocr``): Tesseract with OpenMP on takes 2-5x longer on a 2-core laptop
than with one thread (it spins its threads), so it always runs with ``OMP_THREAD_LIMIT=1``. Upscaling
by 2 (bicubic) makes X's 6x13 bitmap terminal font readable (digits read right, ``@`` found); at 1x it
misreads ``1111`` and drops the ``@``.

Not handled: a token wrapped over two lines is two texts (each half must be sensitive on its own to be
found); masked password echo (dots) is left as it is, since it shows nothing but a length.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from demotrace.geometry import Box
from demotrace.redact.detectors import Detector, screen_detectors
from demotrace.redact.paint import blackout_image
from demotrace.redact.text import find_sensitive

# Tiles for change detection: big enough that diffing is cheap, small enough that one changed word does
# not send a large area to OCR.
CHANGE_TILE_PX = 64
# Vertical padding of a changed band: a text line whose glyphs touch a changed tile is read whole.
CHANGE_LINE_PAD_PX = 24
# Gap between stacked bands on the OCR canvas, so no line reads across two bands.
BAND_GAP_PX = 16
OCR_SCALE = 2
# Tallest canvas handed to one Tesseract run, and the overlap of strips cut from taller regions.
OCR_STRIP_PX = 400
OCR_STRIP_OVERLAP_PX = 48
# Tesseract "sparse text": finds words anywhere, in any layout (screens are not pages).
OCR_PAGE_SEGMENTATION = 11
# Leptonica's adaptive Otsu: one global threshold loses small light-on-white text next to a dark
# desktop (measured: a whole xterm of 6x13 text went missing with the default method).
OCR_THRESHOLDING_METHOD = 1
OCR_TIMEOUT_SECONDS = 120.0
# Words further apart than this many line heights are in different columns.
COLUMN_GAP_LINE_HEIGHTS = 4.0
# A gap narrower than this many line heights, or than this share of the line's median word gap, is a
# space OCR put inside one token (proportional fonts: a space is ~0.3 em; monospace: a whole cell).
SPLIT_TOKEN_GAP_LINE_HEIGHTS = 0.3
SPLIT_TOKEN_GAP_MEDIAN_SHARE = 0.6
# Kinds trusted only in the literal reading: the lenient one folds look-alikes beside numbers and joins
# digit pieces, so a misread clock ("Nov 27 16:10:57" read as "2? 16310326") became a ten-digit number.
# The digit-run detector folds the safe look-alikes itself.
LITERAL_READING_KINDS = frozenset({"NUMBER"})
# A word this close to a flagged one (in line heights: about one space) may be a piece of the same value.
SPREAD_GAP_LINE_HEIGHTS = 1.0
# Margin around a sensitive word's box: anti-aliasing and OCR boxes that clip a glyph edge.
# Wider at the sides: measured, Tesseract's word box can miss most of a first glyph's thin stroke (the
# left leg of an "A": 5 px at 16 px text).
MIN_BOX_MARGIN_PX = 3
SIDE_MARGIN_LINE_HEIGHTS = 0.6
TOP_BOTTOM_MARGIN_LINE_HEIGHTS = 0.25

# Characters OCR reads in place of digits; applied only to tokens that are mostly digits already.
_DIGIT_LOOKALIKES = str.maketrans(
    {
        "O": "0",
        "o": "0",
        "D": "0",
        "Q": "0",
        "l": "1",
        "I": "1",
        "i": "1",
        "|": "1",
        "!": "1",
        "S": "5",
        "s": "5",
        "B": "8",
        "Z": "2",
        "z": "2",
        "G": "6",
        "b": "6",
        "g": "9",
        "q": "9",
        "?": "7",
    }
)
# A height x width boolean image (True: that pixel changed).
Mask = np.ndarray[tuple[int, int], np.dtype[np.bool_]]
# Characters OCR adds at a token's edges: cursors, frame lines, quotes.
_EDGE_NOISE = "|[](){}<>\"'‘’“”`"


class OcrError(RuntimeError):
    """Tesseract is missing, failed, or printed something we cannot read."""


@dataclass(frozen=True, slots=True)
class OcrWord:
    text: str
    box: Box
    confidence: float  # Tesseract's 0-100; low-confidence words are still read for secrets


@dataclass(frozen=True)
class OcrSettings:
    scale: int = OCR_SCALE
    page_segmentation: int = OCR_PAGE_SEGMENTATION
    thresholding_method: int = OCR_THRESHOLDING_METHOD
    language: str = "eng"
    tesseract: str = "tesseract"
    timeout_s: float = OCR_TIMEOUT_SECONDS


@dataclass(frozen=True)
class SensitiveWord:
    word: OcrWord
    kind: str  # the detector kind, e.g. "CREDIT_CARD"


@dataclass(frozen=True)
class ScrubResult:
    """``image``: the frame with ``boxes`` painted black (a copy; the input is untouched).
    ``regions``: what was read by OCR (the whole frame, the changed bands, or nothing)."""

    image: Image.Image
    boxes: list[Box]
    ocr_seconds: float
    regions: list[Box]


# --- change detection (pure) ---------------------------------------------------------------------------


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


# --- OCR (I/O at the edge) -------------------------------------------------------------------------------


def parse_tsv(tsv: str, scale: int = 1) -> list[OcrWord]:
    """Words from Tesseract's TSV output, in the coordinates of the image before it was scaled."""
    lines = tsv.splitlines()
    if not lines or not lines[0].startswith("level\t"):
        raise OcrError(f"unexpected Tesseract output: {tsv[:80]!r}")
    words: list[OcrWord] = []
    for line in lines[1:]:
        columns = line.split("\t")
        if len(columns) != 12:
            continue
        level, _, _, _, _, _, left, top, width, height, confidence, text = columns
        if level != "5" or not text.strip():
            continue
        x, y, w, h = int(left), int(top), int(width), int(height)
        box = Box(x // scale, y // scale, -(-(x + w) // scale), -(-(y + h) // scale))
        words.append(OcrWord(text.strip(), box, float(confidence)))
    return words


def _tesseract_env() -> dict[str, str]:
    # One OpenMP thread: faster on laptops (its threads spin) and leaves cores to the user.
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def run_tesseract(image: Image.Image, settings: OcrSettings) -> str:
    """Tesseract's TSV for an image, passed through pipes only (never a file)."""
    buffer = io.BytesIO()
    # Uncompressed PNM: compressing a canvas only for Tesseract to decompress it cost more than the pipe.
    image.save(buffer, "PPM")
    command = [
        settings.tesseract,
        "stdin",
        "stdout",
        "--psm",
        str(settings.page_segmentation),
        "--dpi",
        str(96 * settings.scale),
        "-c",
        f"thresholding_method={settings.thresholding_method}",
        "-l",
        settings.language,
        "tsv",
    ]
    try:
        done = subprocess.run(
            command,
            input=buffer.getvalue(),
            capture_output=True,
            env=_tesseract_env(),
            timeout=settings.timeout_s,
            check=False,
        )
    except FileNotFoundError as error:
        raise OcrError(
            f"{settings.tesseract} not found: install Tesseract (apt install tesseract-ocr)"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise OcrError(f"Tesseract took more than {settings.timeout_s:.0f} s") from error
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise OcrError(f"Tesseract failed ({done.returncode}): {message}")
    return done.stdout.decode(errors="replace")


def _whiten_solid_dark(grey: Image.Image, block: int = 8, dark: int = 40) -> Image.Image:
    """Blocks that are dark all over (desktop background, our own black boxes, dark panels) painted
    white: Tesseract's thresholding misreads text beside large dark areas, and no text stroke fills a
    whole block."""
    import numpy as np

    pixels = np.asarray(grey).copy()
    rows, columns = pixels.shape[0] // block, pixels.shape[1] // block
    if rows == 0 or columns == 0:
        return grey
    blocks = pixels[: rows * block, : columns * block].reshape(rows, block, columns, block)
    solid = blocks.max(axis=(1, 3)) < dark
    blocks[solid[:, None, :, None].repeat(block, axis=1).repeat(block, axis=3)] = 255
    return Image.fromarray(pixels)


def _for_ocr(image: Image.Image, scale: int) -> Image.Image:
    grey = _whiten_solid_dark(image.convert("L"))
    if scale == 1:
        return grey
    return grey.resize((grey.width * scale, grey.height * scale), Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class _Slot:
    """Where a region of the frame sits on the OCR canvas (both at frame scale)."""

    region: Box
    canvas_top: int


def stack_regions(image: Image.Image, regions: Sequence[Box]) -> tuple[Image.Image, list[_Slot]]:
    """The regions cut from the frame and stacked on one white canvas, so one Tesseract run reads them
    all (each run costs ~0.1 s just to start)."""
    width = max(region.width for region in regions)
    height = sum(region.height for region in regions) + BAND_GAP_PX * (len(regions) - 1)
    canvas = Image.new("L", (width, height), 255)
    slots: list[_Slot] = []
    top = 0
    for region in regions:
        canvas.paste(image.crop(region.as_tuple()).convert("L"), (0, top))
        slots.append(_Slot(region, top))
        top += region.height + BAND_GAP_PX
    return canvas, slots


def _unstack(words: Iterable[OcrWord], slots: Sequence[_Slot]) -> list[OcrWord]:
    """Words on the canvas back in frame coordinates; a word outside every slot (in a gap) is dropped."""
    placed: list[OcrWord] = []
    for word in words:
        middle = (word.box.top + word.box.bottom) // 2
        for slot in slots:
            if slot.canvas_top <= middle < slot.canvas_top + slot.region.height:
                dx, dy = slot.region.left, slot.region.top - slot.canvas_top
                box = Box(word.box.left + dx, word.box.top + dy, word.box.right + dx, word.box.bottom + dy)
                placed.append(OcrWord(word.text, box, word.confidence))
                break
    return placed


def ocr_words(
    image: Image.Image, regions: Sequence[Box] | None = None, settings: OcrSettings | None = None
) -> list[OcrWord]:
    """Tesseract's words in the given regions of the image (all of it if None), in image coordinates."""
    chosen = settings or OcrSettings()
    if regions is not None and not regions:
        return []
    whole = regions if regions is not None else [Box(0, 0, image.width, image.height)]
    # Tesseract misses small text (an xterm's 6x13 font) in a whole 1080p page that it reads in a strip
    # of the same page: read tall regions in overlapping strips, a bounded canvas per run.
    strips = [strip for region in whole for strip in _strips(region)]
    words: list[OcrWord] = []
    for group in _canvas_groups(strips):
        canvas, slots = stack_regions(image, group)
        words += _unstack(
            parse_tsv(run_tesseract(_for_ocr(canvas, chosen.scale), chosen), chosen.scale), slots
        )
    return _without_duplicates(words)


def _strips(region: Box) -> list[Box]:
    """The region cut into strips of at most OCR_STRIP_PX rows, overlapping by OCR_STRIP_OVERLAP_PX so a
    text line cut by one strip's edge is whole in the next."""
    if region.height <= OCR_STRIP_PX:
        return [region]
    strips = []
    top = region.top
    while True:
        bottom = min(top + OCR_STRIP_PX, region.bottom)
        strips.append(Box(region.left, top, region.right, bottom))
        if bottom >= region.bottom:
            return strips
        top = bottom - OCR_STRIP_OVERLAP_PX


def _canvas_groups(strips: Sequence[Box]) -> list[list[Box]]:
    """Strips in groups whose stacked height stays within OCR_STRIP_PX (one Tesseract run each)."""
    groups: list[list[Box]] = []
    height = 0
    for strip in strips:
        if groups and height + BAND_GAP_PX + strip.height <= OCR_STRIP_PX:
            groups[-1].append(strip)
            height += BAND_GAP_PX + strip.height
        else:
            groups.append([strip])
            height = strip.height
    return groups


def _without_duplicates(words: Sequence[OcrWord]) -> list[OcrWord]:
    """A word read twice in the overlap of two strips is kept once (same text, same place ±3 px)."""
    kept: list[OcrWord] = []
    for word in words:
        if not any(
            other.text == word.text
            and abs(other.box.left - word.box.left) <= 3
            and abs(other.box.top - word.box.top) <= 3
            for other in kept
        ):
            kept.append(word)
    return kept


# --- lines and detection (pure) --------------------------------------------------------------------------


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
        line_height = _line_height(row)
        current = [row[0]]
        for word in row[1:]:
            if word.box.left - current[-1].box.right > COLUMN_GAP_LINE_HEIGHTS * line_height:
                lines.append(current)
                current = [word]
            else:
                current.append(word)
        lines.append(current)
    return lines


def _line_height(line: Sequence[OcrWord]) -> float:
    heights = sorted(word.box.height for word in line)
    return float(max(1, heights[len(heights) // 2]))


def _split_token_gap(line: Sequence[OcrWord]) -> float:
    """Gaps between words narrower than this are read as no space in the lenient reading."""
    gaps = sorted(b.box.left - a.box.right for a, b in itertools.pairwise(line))
    median_gap = gaps[len(gaps) // 2] if len(gaps) >= 2 else 0
    return max(SPLIT_TOKEN_GAP_LINE_HEIGHTS * _line_height(line), SPLIT_TOKEN_GAP_MEDIAN_SHARE * median_gap)


def _cleaned_token(text: str) -> str:
    """A word without the noise OCR adds at its edges, and with ``,`` inside it read as ``.``."""
    token = text.strip(_EDGE_NOISE) or text
    return "".join(
        "." if char == "," and 0 < index < len(token) - 1 else char for index, char in enumerate(token)
    )


def _code_like(token: str) -> bool:
    """Letters and digits with at least one digit: a piece of a number, key or code, not a word."""
    return token.replace("-", "").replace("_", "").isalnum() and any(char.isdigit() for char in token)


def _mostly_digits(token: str) -> bool:
    return sum(char.isdigit() for char in token) * 2 >= len(token)


_AT_LOOKALIKES = "B8©®&Q"
_EMAIL_SHAPE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def _as_email(token: str) -> str | None:
    """``rowena.okaforBexample.net`` as the email it probably was: OCR often reads ``@`` as ``B``, ``8``,
    ``©``. A wrong guess only costs an extra black box, never a leak."""
    if "@" in token or "." not in token:
        return None
    for index, char in enumerate(token):
        if char in _AT_LOOKALIKES and 0 < index < len(token) - 1:
            candidate = token[:index] + "@" + token[index + 1 :]
            if _EMAIL_SHAPE.fullmatch(candidate):
                return candidate
    return None


def lenient_tokens(texts: Sequence[str]) -> list[str]:
    """The words of a line as they probably were before OCR slipped: cleaned, and read as digits where
    they look like digits (``4lll``, ``IIII``) and are mostly digits or stand next to a number."""
    cleaned = [_cleaned_token(text) for text in texts]
    as_digits = [token.translate(_DIGIT_LOOKALIKES) for token in cleaned]
    numeric = [
        _mostly_digits(token) and digits.isdigit() for token, digits in zip(cleaned, as_digits, strict=True)
    ]
    out: list[str] = []
    for index, token in enumerate(cleaned):
        beside_number = (index > 0 and numeric[index - 1]) or (
            index + 1 < len(cleaned) and numeric[index + 1]
        )
        # Only where the whole token becomes a number: "75V2SEH6" is a piece of a key, not of a card.
        if as_digits[index].isdigit() and (numeric[index] or beside_number):
            out.append(as_digits[index])
        else:
            out.append(_as_email(token) or token)
    return out


def _readings(line: Sequence[OcrWord]) -> list[tuple[str, list[tuple[int, int]]]]:
    """The line's text as OCR read it and a lenient reading, each with every word's character span."""
    literal: list[str] = []
    lenient: list[str] = []
    literal_spans: list[tuple[int, int]] = []
    lenient_spans: list[tuple[int, int]] = []
    tight_gap = _split_token_gap(line)
    literal_at = lenient_at = 0
    previous: OcrWord | None = None
    previous_token = ""
    for word, token in zip(line, lenient_tokens([w.text for w in line]), strict=True):
        if previous is not None:
            literal.append(" ")
            literal_at += 1
            gap = word.box.left - previous.box.right
            # Two code-like pieces side by side are read as one token too: OCR splits keys where a
            # proportional font's gap is as wide as a space, and a card's groups may run together.
            if gap >= tight_gap and not (_code_like(previous_token) and _code_like(token)):
                lenient.append(" ")
                lenient_at += 1
        literal.append(word.text)
        literal_spans.append((literal_at, literal_at + len(word.text)))
        literal_at += len(word.text)
        lenient.append(token)
        lenient_spans.append((lenient_at, lenient_at + len(token)))
        lenient_at += len(token)
        previous, previous_token = word, token
    return [("".join(literal), literal_spans), ("".join(lenient), lenient_spans)]


@functools.cache
def default_screen_detectors() -> tuple[Detector, ...]:
    return tuple(screen_detectors())


def sensitive_words(
    line: Sequence[OcrWord], detectors: Sequence[Detector] | None = None
) -> list[SensitiveWord]:
    """The words of one line that any detector flags, in either reading of the line (the screen's
    lenient detectors if None), and the code-like pieces glued to them (see :func:`_spread`)."""
    chosen = default_screen_detectors() if detectors is None else detectors
    kinds: dict[int, str] = {}
    for reading, (text, spans) in enumerate(_readings(line)):
        for match in find_sensitive(text, chosen):
            if reading > 0 and match.kind in LITERAL_READING_KINDS:
                continue
            for index, (start, end) in enumerate(spans):
                if start < match.end and match.start < end:
                    kinds.setdefault(index, match.kind)
    _spread(line, kinds)
    return [SensitiveWord(line[index], kind) for index, kind in sorted(kinds.items())]


def _spread(line: Sequence[OcrWord], kinds: dict[int, str]) -> None:
    """Flag the pieces OCR split off a flagged value: a neighbour within a space's width that looks like
    a fragment of a code (``Jd@Fs2Ga7Ex`` after a key read as two words). Left alone, such a piece
    shows part of the value, and a piece that is half the value is a leak."""
    gap = SPREAD_GAP_LINE_HEIGHTS * _line_height(line)
    for step in (1, -1):
        order = range(len(line)) if step == 1 else range(len(line) - 1, -1, -1)
        for index in order:
            neighbour = index + step
            if index not in kinds or neighbour in kinds or not 0 <= neighbour < len(line):
                continue
            left, right = (line[index], line[neighbour]) if step == 1 else (line[neighbour], line[index])
            if right.box.left - left.box.right <= gap and _fragment_like(line[neighbour].text):
                kinds[neighbour] = kinds[index]


def _fragment_like(text: str) -> bool:
    """A piece of a code rather than a word: mixes digits with letters, or upper and lower case beyond
    a capital initial (``eyJhbGci``), or is a run of digits."""
    token = text.strip(_EDGE_NOISE + ".,;:")
    if len(token) < 2:
        return False
    has_digit = any(char.isdigit() for char in token)
    has_letter = any(char.isalpha() for char in token)
    inner_upper = any(char.isupper() for char in token[1:]) and any(char.islower() for char in token)
    return (has_digit and (has_letter or len(token) >= 2)) or inner_upper


def word_cover(word: OcrWord, width: int, height: int) -> Box:
    """The box to paint over a sensitive word: its OCR box with a margin."""
    side = max(MIN_BOX_MARGIN_PX, round(SIDE_MARGIN_LINE_HEIGHTS * word.box.height))
    top_bottom = max(MIN_BOX_MARGIN_PX, round(TOP_BOTTOM_MARGIN_LINE_HEIGHTS * word.box.height))
    box = word.box
    return Box(
        max(0, box.left - side),
        max(0, box.top - top_bottom),
        min(width, box.right + side),
        min(height, box.bottom + top_bottom),
    )


def find_sensitive_words(
    image: Image.Image,
    regions: Sequence[Box] | None = None,
    detectors: Sequence[Detector] | None = None,
    settings: OcrSettings | None = None,
) -> list[SensitiveWord]:
    words = ocr_words(image, regions, settings)
    return [found for line in group_lines(words) for found in sensitive_words(line, detectors)]


def find_sensitive_boxes(
    image: Image.Image,
    regions: Sequence[Box] | None = None,
    detectors: Sequence[Detector] | None = None,
    settings: OcrSettings | None = None,
) -> list[Box]:
    """Boxes (with a margin) of the words in ``regions`` of the image (all of it if None) that hold
    sensitive text."""
    width, height = image.size
    return [
        word_cover(found.word, width, height)
        for found in find_sensitive_words(image, regions, detectors, settings)
    ]


# --- painting ----------------------------------------------------------------------------------------------


def scrub_frame(
    image: Image.Image,
    previous_image: Image.Image | None = None,
    previous_boxes: Sequence[Box] = (),
    detectors: Sequence[Detector] | None = None,
    settings: OcrSettings | None = None,
) -> ScrubResult:
    """Find and paint out sensitive text. With ``previous_image`` (and the boxes found on it), only the
    bands that changed are read, and a previous box is kept where none of its pixels changed."""
    started = time.perf_counter()
    if previous_image is None or previous_image.size != image.size:
        regions = [Box(0, 0, image.width, image.height)]
        kept: list[Box] = []
    else:
        changed = _changed_pixels(previous_image, image)
        regions = _bands(changed, CHANGE_TILE_PX, CHANGE_LINE_PAD_PX)
        kept = _untouched(changed, previous_boxes)
    found = find_sensitive_boxes(image, regions, detectors, settings) if regions else []
    ocr_seconds = time.perf_counter() - started
    boxes = _unique([*kept, *found])
    return ScrubResult(blackout_image(image, boxes), boxes, ocr_seconds, regions)


def _unique(boxes: Iterable[Box]) -> list[Box]:
    return list(dict.fromkeys(boxes))


@dataclass
class ScreenScrubber:
    """Scrubs a stream of frames of one monitor, reading only what changed since the last one.

    Keeps the last raw frame and its boxes in memory only. Not thread-safe: one per thread (or guard it).
    """

    detectors: Sequence[Detector] | None = None
    settings: OcrSettings = field(default_factory=OcrSettings)
    incremental: bool = True
    previous_image: Image.Image | None = None
    previous_boxes: list[Box] = field(default_factory=list)

    def scrub(self, image: Image.Image) -> ScrubResult:
        previous = self.previous_image if self.incremental else None
        result = scrub_frame(image, previous, self.previous_boxes, self.detectors, self.settings)
        self.previous_image = image.copy()
        self.previous_boxes = result.boxes
        return result

    def forget(self) -> None:
        """Drop the remembered frame, e.g. on pause: its unredacted pixels should not linger in memory."""
        self.previous_image = None
        self.previous_boxes = []


__all__ = [
    "OcrError",
    "OcrSettings",
    "OcrWord",
    "ScreenScrubber",
    "ScrubResult",
    "SensitiveWord",
    "changed_regions",
    "find_sensitive_boxes",
    "find_sensitive_words",
    "group_lines",
    "ocr_words",
    "parse_tsv",
    "scrub_frame",
    "sensitive_words",
    "unchanged_boxes",
]
