"""Which rows go in which shard, when the rows come in pieces (one piece per session, written by the
worker that built the session): pure, so every engine cuts the same shards from the same pieces."""

from __future__ import annotations

from collections.abc import Sequence

# One shard: (piece index, first row, end row) slices, in order.
Shard = list[tuple[int, int, int]]


def plan_shards(pieces: Sequence[Sequence[int]], max_count: int, max_bytes: int) -> list[Shard]:
    """``pieces``: each piece's row sizes, in the dataset's order. A shard ends after the row that
    brings it to ``max_count`` rows or ``max_bytes`` bytes; with no rows, one empty shard (so a split
    still loads)."""
    shards: list[Shard] = []
    current: Shard = []
    count = size = 0
    for index, sizes in enumerate(pieces):
        start = 0
        for row, row_size in enumerate(sizes):
            count += 1
            size += row_size
            if count >= max_count or size >= max_bytes:
                current.append((index, start, row + 1))
                shards.append(current)
                current, count, size, start = [], 0, 0, row + 1
        if start < len(sizes):
            current.append((index, start, len(sizes)))
    if current or not shards:
        shards.append(current)
    return shards
