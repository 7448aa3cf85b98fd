"""What every detector shares: the :class:`Match` it reports, the :class:`Detector` protocol, and the
:class:`PatternDetector` base for detectors built from regular expressions.

A detector has a ``kind`` (the placeholder name, e.g. ``CREDIT_CARD``) and ``find(text) -> list[Match]``.
Most are a :class:`PatternDetector`: candidate regular expressions, an optional ``validate`` hook that
rejects near-misses (Luhn, mod-97, SSN number rules) and optional context words for patterns too
ambiguous to trust alone (nine bare digits are an SSN only after "SSN"). Detectors are pure: no I/O, no
state between calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

# How far before a context-only candidate a context word may appear ("SSN: 123456789").
CONTEXT_WINDOW_CHARS = 40
# Token characters on either side mean we are inside a longer token, not at the start of a key.
TOKEN_START = r"(?<![A-Za-z0-9_-])"
TOKEN_END = r"(?![A-Za-z0-9_-])"


@dataclass(frozen=True, slots=True)
class Match:
    """A sensitive span ``text[start:end]`` of the given kind."""

    start: int
    end: int
    kind: str

    def __len__(self) -> int:
        return self.end - self.start


class Detector(Protocol):
    """Anything with a kind and a pure ``find``."""

    @property
    def kind(self) -> str: ...

    def find(self, text: str) -> list[Match]: ...


# When overlapping matches are equally long, the more specific kind names the merged span: a validated
# structure says more than "this looks random".
SPECIFICITY: dict[str, int] = {
    "PRIVATE_KEY": 90,
    "JWT": 80,
    "API_KEY": 80,
    "CREDIT_CARD": 70,
    "IBAN": 70,
    "US_SSN": 60,
    "EMAIL": 50,
    "NUMBER": 45,
    "PHONE": 40,
    "SECRET": 10,
    "USER": 20,
    "HOST": 20,
}
DEFAULT_SPECIFICITY = 30


class PatternDetector:
    """Base for detectors built from regular expressions.

    ``patterns`` always yield candidates; ``context_patterns`` only when one of ``context_words`` (lower
    case) appears within :data:`CONTEXT_WINDOW_CHARS` before the candidate. A pattern with a group named
    ``value`` reports that group's span instead of the whole match. Every candidate must pass
    :meth:`validate`.
    """

    kind: ClassVar[str]
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = ()
    context_patterns: ClassVar[tuple[re.Pattern[str], ...]] = ()
    context_words: ClassVar[tuple[str, ...]] = ()

    def validate(self, candidate: str) -> bool:
        return True

    def candidate_spans(self, text: str) -> Iterator[tuple[int, int]]:
        for pattern in self.patterns:
            for found in pattern.finditer(text):
                yield _value_span(found)
        if not self.context_patterns:
            return
        for pattern in self.context_patterns:
            for found in pattern.finditer(text):
                start, end = _value_span(found)
                if has_context_word(text, start, self.context_words):
                    yield start, end

    def find(self, text: str) -> list[Match]:
        spans = sorted(set(self.candidate_spans(text)))
        return [Match(start, end, self.kind) for start, end in spans if self.validate(text[start:end])]


def _value_span(found: re.Match[str]) -> tuple[int, int]:
    if "value" in found.re.groupindex:
        return found.span("value")
    return found.span()


def has_context_word(text: str, start: int, words: tuple[str, ...]) -> bool:
    before = text[max(0, start - CONTEXT_WINDOW_CHARS) : start].lower()
    return any(word in before for word in words)


__all__ = [
    "CONTEXT_WINDOW_CHARS",
    "DEFAULT_SPECIFICITY",
    "SPECIFICITY",
    "TOKEN_END",
    "TOKEN_START",
    "Detector",
    "Match",
    "PatternDetector",
    "has_context_word",
]
