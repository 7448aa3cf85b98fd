"""Frame benchmark video helpers: timestamps an encoder accepts, key frames where the deltas put theirs."""

from __future__ import annotations

import pytest

from bench.frames import video_key_frames, video_timestamps


def test_timestamps_count_ticks_from_the_first_frame() -> None:
    assert video_timestamps([100.0, 100.25, 103.5], 1000) == [0, 250, 3500]


def test_frames_in_the_same_tick_still_get_increasing_timestamps() -> None:
    stamps = video_timestamps([5.0, 5.0001, 5.0002, 5.0003, 5.002], 1000)

    assert stamps == [0, 1, 2, 3, 4]


def test_no_frames_no_timestamps() -> None:
    assert video_timestamps([], 1000) == []


def test_key_frames_first_on_window_switch_and_after_a_full_chain() -> None:
    window_changed = [True, False, False, True, False, False, False, False, False]

    keys = video_key_frames(window_changed, 3, on_window_change=True)

    assert keys == [True, False, False, True, False, False, True, False, False]


def test_window_switches_ignored_when_asked() -> None:
    window_changed = [True, False, True, False, False]

    assert video_key_frames(window_changed, 30, on_window_change=False) == [True, False, False, False, False]


def test_interval_one_makes_every_frame_a_key_frame() -> None:
    assert video_key_frames([False] * 4, 1, on_window_change=True) == [True] * 4


def test_interval_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        video_key_frames([False], 0, on_window_change=True)
