from __future__ import annotations

from demotrace.capture.paths import distance_to_segment, drop_repeats, relative_path, simplify


def test_straight_line_keeps_only_its_ends_with_their_times() -> None:
    line = [(x, 100, x / 1000) for x in range(100, 301, 10)]
    assert simplify(line) == [(100, 100, 0.1), (300, 100, 0.3)]


def test_corner_of_an_l_shaped_path_is_kept() -> None:
    across = [(x, 100, x / 1000) for x in range(100, 301, 20)]
    down = [(300, y, 0.3 + (y - 100) / 1000) for y in range(120, 301, 20)]
    assert simplify(across + down) == [(100, 100, 0.1), (300, 100, 0.3), (300, 300, 0.5)]


def test_turning_point_of_an_out_and_back_path_is_kept() -> None:
    # The return leg lies on the same line; only segment distance (not line distance) sees the turn.
    path = [(100, 100, 0.0), (200, 100, 0.1), (300, 100, 0.2), (200, 100, 0.3), (150, 100, 0.4)]
    assert simplify(path) == [(100, 100, 0.0), (300, 100, 0.2), (150, 100, 0.4)]


def test_hand_jitter_within_two_pixels_is_dropped_and_larger_bends_are_not() -> None:
    jittery = [(100, 100, 0.0), (150, 102, 0.05), (200, 99, 0.1), (250, 101, 0.15), (300, 100, 0.2)]
    assert simplify(jittery) == [(100, 100, 0.0), (300, 100, 0.2)]
    bent = [(100, 100, 0.0), (200, 104, 0.1), (300, 100, 0.2)]
    assert simplify(bent) == bent


def test_tiny_paths_are_returned_as_they_are() -> None:
    assert simplify([]) == []
    assert simplify([(5, 5, 1.0)]) == [(5, 5, 1.0)]
    assert simplify([(5, 5, 1.0), (5, 5, 2.0)]) == [(5, 5, 1.0), (5, 5, 2.0)]


def test_distance_to_a_degenerate_segment_is_the_distance_to_its_point() -> None:
    assert distance_to_segment((3, 4, 0.0), (0, 0, 0.0), (0, 0, 1.0)) == 5.0
    assert distance_to_segment((5, 3, 0.0), (0, 0, 0.0), (10, 0, 1.0)) == 3.0
    assert distance_to_segment((14, 3, 0.0), (0, 0, 0.0), (10, 0, 1.0)) == 5.0  # past the end


def test_repeated_pixels_keep_the_time_they_were_first_reached() -> None:
    assert drop_repeats([(1, 1, 0.0), (1, 1, 0.5), (2, 1, 0.6), (2, 1, 0.7)]) == [(1, 1, 0.0), (2, 1, 0.6)]


def test_relative_path_counts_seconds_from_the_first_point() -> None:
    points = [(100, 100, 50.0), (200, 100, 50.1), (300, 100, 50.2), (300, 300, 50.45)]
    assert relative_path(points) == [(100, 100, 0.0), (300, 100, 0.2), (300, 300, 0.45)]
    assert relative_path([]) == []


def test_a_zigzag_longer_than_the_recursion_limit_keeps_its_turns() -> None:
    zigzag = [(i, (i % 2) * 10, i / 100) for i in range(1200)]
    assert len(simplify(zigzag)) >= 1190
