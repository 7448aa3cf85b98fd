"""Cutting shards from sessions' pieces: the same cut however the rows are split into pieces."""

from __future__ import annotations

from demotrace.dataset.export.shards import plan_shards


def rows_of(plan: list[list[tuple[int, int, int]]], pieces: list[list[int]]) -> list[list[int]]:
    return [[size for index, start, stop in shard for size in pieces[index][start:stop]] for shard in plan]


def test_a_shard_ends_at_the_row_that_reaches_a_limit_wherever_the_pieces_split() -> None:
    sizes = [10, 10, 50, 10, 10, 10, 10]
    whole = rows_of(plan_shards([sizes], 3, 1_000), [sizes])
    assert whole == [[10, 10, 50], [10, 10, 10], [10]]
    for split in ([sizes[:2], sizes[2:]], [sizes[:1], [], sizes[1:5], sizes[5:]]):
        assert rows_of(plan_shards(split, 3, 1_000), split) == whole
    by_bytes = rows_of(plan_shards([sizes], 100, 60), [sizes])
    assert by_bytes == [[10, 10, 50], [10, 10, 10, 10]]


def test_no_rows_give_one_empty_shard_and_a_full_last_shard_no_empty_one() -> None:
    assert plan_shards([], 3, 100) == [[]]
    assert plan_shards([[], []], 3, 100) == [[]]
    assert plan_shards([[1, 1, 1]], 3, 100) == [[(0, 0, 3)]]
