"""Counts in words, for every message that prints one: "1 episode", "2 episodes"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun made plural unless the count is one (``many`` if not just +s)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or noun + 's'}"
