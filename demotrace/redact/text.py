"""Typed-text redaction of whole strings (:func:`redact_text`), and the pieces live typing shares
(:func:`find_sensitive`, :func:`merge_overlapping`, :func:`placeholder`); live typing itself is
``typing_burst``.

Pure: data in, data out, no threads, no I/O, nothing written anywhere.

Whole strings
    Every detector runs over the text; overlapping matches merge into one span (the union), named after
    the longest match in it (ties: the more specific kind, see ``detectors.base.SPECIFICITY``); each span is
    replaced by ``<KIND>``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from demotrace.redact.detectors import all_detectors
from demotrace.redact.detectors.base import DEFAULT_SPECIFICITY, SPECIFICITY, Detector, Match


def placeholder(kind: str) -> str:
    return f"<{kind}>"


@dataclass(frozen=True)
class RedactionResult:
    """The text with each sensitive span replaced by ``<KIND>``; ``matches`` are the merged spans in the
    original text."""

    text: str
    matches: list[Match]


@functools.cache
def default_detectors() -> tuple[Detector, ...]:
    return tuple(all_detectors())


def _rank(match: Match) -> tuple[int, int]:
    return len(match), SPECIFICITY.get(match.kind, DEFAULT_SPECIFICITY)


def merge_overlapping(matches: Iterable[Match]) -> list[Match]:
    """Overlapping matches become one span covering them all, named after the longest (then the most
    specific) of them. Spans that merely touch stay apart."""
    merged: list[Match] = []
    start = end = 0
    best: Match | None = None
    for match in sorted(matches, key=lambda m: (m.start, -m.end)):
        if best is not None and match.start < end:
            end = max(end, match.end)
            best = max(best, match, key=_rank)
            continue
        if best is not None:
            merged.append(Match(start, end, best.kind))
        start, end, best = match.start, match.end, match
    if best is not None:
        merged.append(Match(start, end, best.kind))
    return merged


def find_sensitive(text: str, detectors: Sequence[Detector] | None = None) -> list[Match]:
    """Every detector's matches, merged."""
    chosen = default_detectors() if detectors is None else detectors
    return merge_overlapping(match for detector in chosen for match in detector.find(text))


def replace_spans(text: str, spans: Sequence[Match]) -> str:
    """``text`` with each (merged, sorted) span replaced by its placeholder."""
    parts: list[str] = []
    position = 0
    for span in spans:
        parts.append(text[position : span.start])
        parts.append(placeholder(span.kind))
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


def redact_text(text: str, detectors: Sequence[Detector] | None = None) -> RedactionResult:
    matches = find_sensitive(text, detectors)
    return RedactionResult(replace_spans(text, matches), matches)


__all__ = [
    "RedactionResult",
    "default_detectors",
    "find_sensitive",
    "merge_overlapping",
    "placeholder",
    "redact_text",
    "replace_spans",
]
