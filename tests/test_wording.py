"""Counts and sizes in the words every message uses."""

from __future__ import annotations

from demotrace.wording import plural, size_text


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert [plural(count, "episode") for count in (0, 1, 2)] == ["0 episodes", "1 episode", "2 episodes"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"


def test_sizes_read_as_people_read_them() -> None:
    assert [size_text(size) for size in (1, 812, 42_300, 3_400_000)] == [
        "1 byte",
        "812 bytes",
        "42 kB",
        "3.4 MB",
    ]
