"""Pointer path simplification: keep the shape of a mouse path in a few points, with their times.

Pure functions over ``(x, y, t)`` points. The simplifier is Ramer–Douglas–Peucker with a pixel
tolerance; distances are measured to the *segment* between kept points (not the infinite line), so a
pointer that goes out and comes back along the same line keeps its turning point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Sub-pixel wobble and 1-2 px hand jitter carry no intent; 2 px keeps every visible bend.
DEFAULT_TOLERANCE_PX = 2.0

TimedPoint = tuple[int, int, float]


def distance_to_segment(point: TimedPoint, start: TimedPoint, end: TimedPoint) -> float:
    """Euclidean distance in pixels from ``point`` to the segment ``start``-``end`` (times ignored)."""
    px, py = point[0], point[1]
    ax, ay = start[0], start[1]
    bx, by = end[0], end[1]
    dx, dy = bx - ax, by - ay
    length_squared = dx * dx + dy * dy
    if length_squared == 0:
        return math.hypot(px - ax, py - ay)
    along = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length_squared))
    return math.hypot(px - (ax + along * dx), py - (ay + along * dy))


def drop_repeats(points: Sequence[TimedPoint]) -> list[TimedPoint]:
    """Remove consecutive points at the same pixel, keeping the first time it was reached."""
    kept: list[TimedPoint] = []
    for point in points:
        if not kept or (kept[-1][0], kept[-1][1]) != (point[0], point[1]):
            kept.append(point)
    return kept


def simplify(points: Sequence[TimedPoint], tolerance: float = DEFAULT_TOLERANCE_PX) -> list[TimedPoint]:
    """Ramer–Douglas–Peucker: the fewest original points whose polyline stays within ``tolerance`` px.

    First and last points are always kept; kept points keep their original timestamps, so speed
    along the path survives. Iterative, so a very long path cannot hit the recursion limit.
    """
    if len(points) <= 2:
        return list(points)
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    spans = [(0, len(points) - 1)]
    while spans:
        first, last = spans.pop()
        farthest, farthest_distance = -1, tolerance
        for index in range(first + 1, last):
            distance = distance_to_segment(points[index], points[first], points[last])
            if distance > farthest_distance:
                farthest, farthest_distance = index, distance
        if farthest >= 0:
            keep[farthest] = True
            spans.append((first, farthest))
            spans.append((farthest, last))
    return [point for point, kept in zip(points, keep, strict=True) if kept]


def relative_path(points: Sequence[TimedPoint], tolerance: float = DEFAULT_TOLERANCE_PX) -> list[TimedPoint]:
    """Simplify absolute-time points into MovePath form: times become seconds since the first point."""
    simplified = simplify(drop_repeats(points), tolerance)
    if not simplified:
        return []
    start = simplified[0][2]
    return [(x, y, round(t - start, 4)) for x, y, t in simplified]
