"""When the recorder grabs a frame for a scroll: pure decisions, no X."""

from __future__ import annotations

from demotrace.capture.triggers import TriggerState, frame_trigger


def scroll_triggers(ticks: list[tuple[float, int, int]]) -> list[str | None]:
    state = TriggerState()
    triggers: list[str | None] = []
    for t, dx, dy in ticks:
        trigger, state = frame_trigger(state, "scroll", t, dx=dx, dy=dy)
        triggers.append(trigger)
    return triggers


def test_a_scroll_that_turns_back_starts_a_new_frame_burst() -> None:
    # 3 ticks down, then 2 up within the burst gap: the dataset makes two steps, each needs its own frame.
    ticks = [(1.0, 0, -1), (1.1, 0, -1), (1.2, 0, -1), (1.3, 0, 1), (1.4, 0, 1)]
    assert scroll_triggers(ticks) == ["scroll", None, None, "scroll", None]


def test_a_scroll_that_turns_back_sideways_starts_a_new_frame_burst() -> None:
    assert scroll_triggers([(1.0, 2, 0), (1.1, 1, 0), (1.2, -1, 0)]) == ["scroll", None, "scroll"]


def test_a_scroll_on_the_other_axis_continues_the_burst() -> None:
    # down then right is no reversal: the dataset adds these up on their own axes, in one step
    assert scroll_triggers([(1.0, 0, -1), (1.1, 1, 0), (1.2, 0, -1)]) == ["scroll", None, None]


def test_a_reversal_after_the_gap_and_one_after_a_reversal_each_start_a_burst() -> None:
    ticks = [(1.0, 0, -1), (3.0, 0, 1), (3.1, 0, -1), (3.2, 0, -1)]
    assert scroll_triggers(ticks) == ["scroll", "scroll", "scroll", None]
