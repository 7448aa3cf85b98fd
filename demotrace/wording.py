"""Counts in words, for every message that prints one: "1 episode", "2 episodes"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun made plural unless the count is one (``many`` if not just +s)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or noun + 's'}"


def size_text(size: int) -> str:
    """A byte count as people read it: "812 bytes", "42 kB", "3.4 MB" (decimal units)."""
    if size < 1000:
        return plural(size, "byte")
    if size < 1_000_000:
        return f"{size / 1000:.0f} kB"
    return f"{size / 1e6:.1f} MB"
