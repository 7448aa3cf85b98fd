"""Which words on a screen to cover (pure: OCR words in, the words and boxes to paint out).

:func:`sensitive_words` runs the detectors over each line's text, in two readings: as OCR read it, and a
lenient one that undoes the usual OCR slips on secrets (``,`` for ``.`` in a domain, ``l``/``O``/``S``
for ``1``/``0``/``5`` among digits, a space inserted inside a token, a card read as
``4111 1111 11111111``: narrow gaps, and gaps between pieces holding digits, are closed). A match's
character span maps back to the words it touches. The detectors are the screen set
(``detectors.screen_detectors``): the typed-text ones plus lenient, screen-only ones (IBAN by shape,
``@`` look-alikes, key prefixes with confusable characters, random tokens from 12 characters, digit runs
from 9), since on a screen a false positive costs a box over one word and a miss leaks. A piece OCR
split off a flagged value (``Jd@Fs2Ga7Ex`` after a key's first half) is flagged with it.
:func:`word_cover` is the box painted over a flagged word: its OCR box with a margin.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from demotrace.geometry import Box
from demotrace.redact.detectors import screen_detectors
from demotrace.redact.detectors.base import Detector
from demotrace.redact.lines import OcrWord, group_lines, line_height, split_token_gap
from demotrace.redact.text import find_sensitive
from demotrace.redact.text_lines import Columns, ink_runs

# Kinds trusted only in the literal reading: the lenient one folds look-alikes beside numbers and joins
# digit pieces, so a misread clock ("Nov 27 16:10:57" read as "2? 16310326") became a ten-digit number.
# The digit-run detector folds the safe look-alikes itself.
LITERAL_READING_KINDS = frozenset({"NUMBER"})
# A word this close to a flagged one (in line heights: about one space) may be a piece of the same value.
SPREAD_GAP_LINE_HEIGHTS = 1.0
# Around a value's measured ink: the faintest anti-aliased pixels are below the ink threshold.
INK_MARGIN_PX = 2
# Ink gaps narrower than this share of the line height are inside a token.
TOKEN_GAP_LINE_HEIGHTS = 0.3
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
# Characters OCR adds at a token's edges: cursors, frame lines, quotes.
_EDGE_NOISE = "|[](){}<>\"'‘’“”`"


@dataclass(frozen=True)
class SensitiveWord:
    word: OcrWord
    kind: str  # the detector kind, e.g. "CREDIT_CARD"


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


def _email_goes_on(previous: str, token: str) -> bool:
    """An address cut where OCR saw a gap: ``jane.doe@example.`` then ``com`` (a cursor, a wide dot),
    or ``jane.doe`` then ``@example.com``."""
    if token.startswith("@"):
        return previous[-1:].isalnum()
    return "@" in previous and previous.endswith((".", "@")) and token[:1].isalnum()


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
    tight_gap = split_token_gap(line)
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
            if gap >= tight_gap and not (
                (_code_like(previous_token) and _code_like(token)) or _email_goes_on(previous_token, token)
            ):
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
    gap = SPREAD_GAP_LINE_HEIGHTS * line_height(line)
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


def words_to_cover(
    words: Iterable[OcrWord], detectors: Sequence[Detector] | None = None
) -> list[SensitiveWord]:
    """The sensitive words among a frame's OCR words, line by line (see :func:`sensitive_words`)."""
    return [found for line in group_lines(words) for found in sensitive_words(line, detectors)]


def token_gap(line_height: int) -> int:
    """Blank columns at least this wide part two tokens: a third of the line height, wider than any
    letter spacing or the room around a ``.`` or ``@`` in a monospace font (3 px in X's 6x13), narrower
    than a space (7 px there; 5-6 px in 16 px DejaVu Sans)."""
    return max(2, math.ceil(TOKEN_GAP_LINE_HEIGHTS * line_height))


def cover_line(
    words: Sequence[OcrWord],
    line: Box,
    ink: Columns,
    detectors: Sequence[Detector] | None,
    width: int,
    height: int,
) -> list[Box]:
    """The boxes to paint over one text line found in the pixels (``line``; ``ink``: which of its
    columns hold ink), given the words OCR read in it.

    A flagged word's cover spans the whole token of ink it sits in (no gap as wide as a space), and the
    tokens beside it, a space away or closer, that OCR read nothing plain in: OCR drops pieces of values
    (``Ema ne.doe@…`` for ``Email jane.doe@…``; a card's first group missing), and the ink it dropped is
    still there. The cover spans the line's height.
    """
    flagged = words_to_cover(words, detectors)
    if not flagged:
        return []
    sensitive = {id(found.word) for found in flagged}
    plain_words = [word for word in words if id(word) not in sensitive]
    plain = [word.box for word in plain_words]
    runs = ink_runs(ink, line.left, token_gap(line.height))
    reach = SPREAD_GAP_LINE_HEIGHTS * line.height
    boxes: list[Box] = []
    for found in flagged:
        cover = word_cover(found.word, width, height)
        left, right = found.word.box.left, found.word.box.right
        touched = [index for index, (a, b) in enumerate(runs) if a < right and left < b]
        if touched:
            first, last = touched[0], touched[-1]
            left, right = min(left, runs[first][0]), max(right, runs[last][1])
            while (
                first > 0
                and left - runs[first - 1][1] <= reach
                and not _read_as_plain(runs[first - 1], plain)
            ):
                first -= 1
                left = runs[first][0]
            while (
                last + 1 < len(runs)
                and runs[last + 1][0] - right <= reach
                and not _read_as_plain(runs[last + 1], plain)
            ):
                last += 1
                right = runs[last][1]
        if not touched:  # OCR placed the word off the ink it found: trust its box, with the margin
            boxes.append(cover)
            continue
        # The ink's own extent, with a margin for anti-aliasing (the ink is measured). A word OCR read
        # as plain text in the same token is covered too ("jane," + "doeBexample,com" is one email),
        # unless letters or digits face each other across the gap: then it was a space, too narrow
        # to part the ink in a small proportional font ("Lovelace 4111 …", "… corp-mail.de or call").
        word = found.word.box
        text = found.word.text.strip(_EDGE_NOISE)
        for other in plain_words:
            other_text = other.text.strip(_EDGE_NOISE)
            if other.box.right <= word.left and _words_apart(other_text, text):
                left = max(left, other.box.right + 1 + INK_MARGIN_PX)
            elif other.box.left >= word.right and _words_apart(text, other_text):
                right = min(right, other.box.left - 1 - INK_MARGIN_PX)
        boxes.append(
            Box(
                max(0, min(word.left, left - INK_MARGIN_PX)),
                max(0, min(cover.top, line.top - MIN_BOX_MARGIN_PX)),
                min(width, max(word.right, right + INK_MARGIN_PX)),
                min(height, max(cover.bottom, line.bottom + MIN_BOX_MARGIN_PX)),
            )
        )
    return boxes


def _words_apart(before: str, after: str) -> bool:
    """Two words OCR read side by side are separate words, not pieces of one token."""
    return before[-1:].isalnum() and after[:1].isalnum()


def _read_as_plain(run: tuple[int, int], plain: Sequence[Box]) -> bool:
    """OCR read an unflagged word over most of this ink run."""
    left, right = run
    covered = sum(max(0, min(right, box.right) - max(left, box.left)) for box in plain)
    return covered * 2 >= right - left


__all__ = [
    "SensitiveWord",
    "cover_line",
    "default_screen_detectors",
    "lenient_tokens",
    "sensitive_words",
    "word_cover",
    "words_to_cover",
]
