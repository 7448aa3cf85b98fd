"""Lenient detectors for text read off the screen by OCR; never used on typed text.

On a screen the costs are the other way round from typed text: a false positive paints one small black
box over a word on one frame, a miss leaks the value into every copy of that frame. And OCR slips: it
reads ``0`` for ``O`` and ``6`` for ``G``, drops an ``_`` or an ``@``, and a text box scrolled sideways
shows only the tail of a value. So these detectors trust shapes, not checksums:

* :class:`LenientIbanDetector`: a country code, two check digits and a mostly-digit account part of
  about the country's length, OCR's letter/digit confusions folded, no mod-97 check.
* :class:`LenientEmailDetector`: ``local@domain.tld`` where the ``@`` may be a look-alike (``©``,
  ``®``) and may stand apart from one of its neighbours.
* :class:`LenientApiKeyDetector`: vendor key prefixes with look-alike characters and a lost separator.
* :class:`ScreenSecretDetector`: random-looking tokens from 12 characters (typed text wants 20), judged
  between ``/`` so the path in a shell prompt is not a secret.
* :class:`DigitRunDetector`: nine or more digits in a row or in groups (what a text box scrolled
  sideways shows of a card, an IBAN or an account number), dates excepted.

Ordinary screen text (UI words, dates, short numbers, window titles, a shell prompt) must still pass:
``tests/test_detectors.py`` holds the near-misses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

from demotrace.redact.detectors import Match, PatternDetector, has_context_word
from demotrace.redact.detectors.high_entropy import SECRET_CONTEXT_WORDS, looks_random, shannon_entropy
from demotrace.redact.detectors.iban import IBAN_LENGTHS

# What OCR reads in place of a digit, and in place of a letter.
DIGIT_LOOKALIKES = str.maketrans("OoDQIl|iSsBZzGbgq", "00001111558226699")
LETTER_LOOKALIKES = str.maketrans("01256840", "OIZSGBAD")

# An IBAN read by OCR may be this many characters longer or shorter than its country's length.
IBAN_LENGTH_SLACK = 2
# Share of an IBAN's account part that reads as digits (GB and NL put four letters of bank code first),
# and the fewest real digits in it (so a sentence after "DE44" is not an account).
IBAN_MIN_DIGIT_SHARE = 0.5
IBAN_MIN_ACCOUNT_DIGITS = 6
MIN_DIGIT_RUN = 9
SCREEN_SECRET_MIN_CHARS = 12
KEY_BODY_MIN_CHARS = 12
KEY_BODY_MIN_ENTROPY_BITS = 3.0


def as_digits(text: str) -> str:
    """The text with letters OCR confuses with digits read as those digits."""
    return text.translate(DIGIT_LOOKALIKES)


def as_letters(text: str) -> str:
    """The text in upper case, with digits OCR confuses with letters read as those letters."""
    return text.translate(LETTER_LOOKALIKES).upper()


# --- IBAN ----------------------------------------------------------------------------------------------

_ALNUM_GROUP = re.compile(r"[A-Za-z0-9]+")


def _looks_like_account(account: str) -> bool:
    digit_like = sum(char.isdigit() for char in as_digits(account))
    digits = sum(char.isdigit() for char in account)
    return digit_like >= IBAN_MIN_DIGIT_SHARE * len(account) and digits >= IBAN_MIN_ACCOUNT_DIGITS


class LenientIbanDetector:
    """Letter/digit groups, single spaces between them, that start like an IBAN (a country code and two
    check digits, look-alikes folded) and are about as long as that country's IBANs."""

    kind = "IBAN"

    def find(self, text: str) -> list[Match]:
        groups = list(_ALNUM_GROUP.finditer(text))
        matches: list[Match] = []
        first = 0
        while first < len(groups):
            last = self._last_group(text, groups, first)
            if last is None:
                first += 1
                continue
            matches.append(Match(groups[first].start(), groups[last].end(), self.kind))
            first = last + 1
        return matches

    @staticmethod
    def _last_group(text: str, groups: list[re.Match[str]], first: int) -> int | None:
        """The last group of an IBAN starting at group ``first``: the boundary nearest the country's
        length within the slack, or None."""
        head = groups[first].group()
        expected = IBAN_LENGTHS.get(as_letters(head[:2]))
        if len(head) < 4 or expected is None or not as_digits(head[2:4]).isdigit():
            return None
        best: tuple[int, int] | None = None  # (distance from the expected length, group index)
        length = 0
        for index in range(first, len(groups)):
            if index > first and text[groups[index - 1].end() : groups[index].start()] != " ":
                break
            group = groups[index].group()
            length += len(group)
            if length > expected + IBAN_LENGTH_SLACK:
                break
            compact = "".join(g.group() for g in groups[first : index + 1])
            distance = abs(length - expected)
            nearer = best is None or distance < best[0]
            if distance <= IBAN_LENGTH_SLACK and nearer and _looks_like_account(compact[4:]):
                best = (distance, index)
        return None if best is None else best[1]


# --- email ---------------------------------------------------------------------------------------------


class LenientEmailDetector(PatternDetector):
    """An address whose ``@`` OCR read as a look-alike or set apart by a space on one side (the space
    inside the domain, or a comma for its dot, are undone by the screen's lenient reading)."""

    kind = "EMAIL"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = (
        re.compile(
            r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*(?:\s?[@©®]|[@©®]\s)"
            r"(?:[A-Za-z0-9-]+[.,])+[A-Za-z]{2,24}(?![\w-])"
        ),
    )


# --- API keys ------------------------------------------------------------------------------------------

_KEY_START = r"(?<![A-Za-z0-9])"
# Vendor prefixes as OCR reads them: look-alikes in brackets, a separator that may be lost or read as a
# space. Only the start of the body is required: a scrolled text box may cut the rest.
_KEY_PREFIXES = (
    r"[A4][KX][I1l|][A4]",  # AWS access key id
    r"[gq9][hb][pousr0][_\- ]?",  # GitHub classic and app tokens
    r"g[i1l]thub[_ ]pat[_ ]",  # GitHub fine-grained
    r"x[o0]x[bpars][\- ]",  # Slack
    r"[sr]k[_ ](?:live|test)[_ ]",  # Stripe
    r"A[I1l|]za",  # Google
    r"sk[\-_ ](?:proj[\-_ ]|svcacct[\-_ ]|admin[\-_ ])?",  # OpenAI-style
)


class LenientApiKeyDetector(PatternDetector):
    """A vendor prefix (look-alikes allowed) followed by at least 12 characters of a key body that mixes
    letters and digits."""

    kind = "API_KEY"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = tuple(
        re.compile(_KEY_START + rf"(?:{prefix})(?P<body>[A-Za-z0-9_\-]{{{KEY_BODY_MIN_CHARS},}})")
        for prefix in _KEY_PREFIXES
    )

    def candidate_spans(self, text: str) -> Iterator[tuple[int, int]]:
        # The whole key, prefix included, is the span; only its body is judged.
        for pattern in self.patterns:
            for found in pattern.finditer(text):
                if _key_body(found.group("body")):
                    yield found.span()


def _key_body(body: str) -> bool:
    return (
        any(char.isdigit() for char in body)
        and any(char.isalpha() for char in body)
        and shannon_entropy(body) >= KEY_BODY_MIN_ENTROPY_BITS
    )


# --- random tokens -------------------------------------------------------------------------------------

_TOKEN_CHARS = r"A-Za-z0-9+/_.~\-"
_SCREEN_TOKEN = re.compile(
    rf"(?<![{_TOKEN_CHARS}=])[{_TOKEN_CHARS}]{{{SCREEN_SECRET_MIN_CHARS},}}={{0,3}}(?![A-Za-z0-9+/_~\-=])"
)
# Paths and dotted names (versions, hosts, files) are judged part by part; base64 keys rarely hold a
# "/" and never a ".", so their long random part is still found, and a JWT's parts each are.
_PART_SEPARATORS = re.compile(r"[/.]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class ScreenSecretDetector:
    """Random-looking tokens of 12 characters or more. A token with ``/`` or ``.`` in it is a secret
    when one of its parts is: paths (``/work/wt-ocr-recall``) and versions (``6.1.0-18-amd64``) are
    short or wordy between the separators."""

    kind = "SECRET"

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        for found in _SCREEN_TOKEN.finditer(text):
            start, end = found.span()
            while end > start and text[end - 1] == ".":  # a sentence's full stop
                end -= 1
            token = text[start:end]
            if _UUID.fullmatch(token) and not has_context_word(text, start, SECRET_CONTEXT_WORDS):
                continue
            if any(looks_random(part, SCREEN_SECRET_MIN_CHARS) for part in _PART_SEPARATORS.split(token)):
                matches.append(Match(start, end, self.kind))
        return matches


# --- digit runs ----------------------------------------------------------------------------------------

# Digits, single spaces or dashes between them, and OCR's usual letters for digits inside; not inside a
# longer token (the last group of a UUID, a version, a file name).
_DIGIT_RUN = re.compile(r"(?<![\w.\-/])[OoIl|]?\d(?:[ -]?[\dOoIl|SB])*\d(?![0-9])")
# Dates are the long digit runs ordinary screens are full of (2024-01-15, 15-01-2024).
_DATE = re.compile(r"(?<!\d)(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{4})(?!\d)")
# Share of a run's characters that must be real digits (the rest: look-alikes OCR read for digits).
MIN_REAL_DIGIT_SHARE = 2 / 3


class DigitRunDetector:
    """Nine or more digits in a row, or in groups split by single spaces or dashes, dates excepted; a
    few OCR look-alikes (``O`` for ``0``, ``l`` for ``1``) count as digits inside a run."""

    kind = "NUMBER"

    def find(self, text: str) -> list[Match]:
        without_dates = _DATE.sub(lambda date: "x" * len(date.group()), text)
        matches = []
        for run in _DIGIT_RUN.finditer(without_dates):
            characters = [char for char in run.group() if char not in " -"]
            digits = sum(char.isdigit() for char in characters)
            if len(characters) >= MIN_DIGIT_RUN and digits >= MIN_REAL_DIGIT_SHARE * len(characters):
                matches.append(Match(run.start(), run.end(), self.kind))
        return matches
