"""reduce_events on synthetic event streams: what a person did → the actions an agent would take."""

from __future__ import annotations

from collections.abc import Sequence

from demotrace.dataset.export.agentnet import ScreenSize, action_code
from demotrace.dataset.reduce import reduce_events
from demotrace.model import (
    Action,
    Button,
    ButtonName,
    Event,
    FrameTaken,
    Key,
    Marker,
    Monitor,
    MovePath,
    Scroll,
    SessionHeader,
    Window,
)

WALL0 = 1_700_000_000.0
HEADER = SessionHeader(
    session_id="s1",
    device_id="d1",
    platform="x11",
    screen_width=1920,
    screen_height=1080,
    monitors=[Monitor(left=0, top=0, width=1920, height=1080)],
    double_click_ms=400,
    double_click_px=4,
    t=0.0,
    wall=WALL0,
)
SCREEN = ScreenSize(width=1920, height=1080)


def click(t: float, x: int, y: int, button: ButtonName = "left", hold: float = 0.05) -> list[Event]:
    return [
        Button(t=t, wall=WALL0 + t, down=True, button=button, x=x, y=y),
        Button(t=t + hold, wall=WALL0 + t + hold, down=False, button=button, x=x, y=y),
    ]


def key(
    t: float, name: str, char: str | None = None, modifiers: Sequence[str] = (), down: bool = True
) -> Key:
    return Key(t=t, wall=WALL0 + t, down=down, key=name, char=char, modifiers=list(modifiers))


def tap(t: float, name: str, char: str | None = None, modifiers: Sequence[str] = ()) -> list[Event]:
    return [key(t, name, char, modifiers), key(t + 0.03, name, char, modifiers, down=False)]


def typed(t: float, text: str, gap: float = 0.1) -> list[Event]:
    events: list[Event] = []
    for index, char in enumerate(text):
        name = "space" if char == " " else char.lower()
        events += tap(t + index * gap, name, char, ["shift"] if char.isupper() else [])
    return events


def scroll(t: float, x: int, y: int, dy: int = -1, dx: int = 0) -> Scroll:
    return Scroll(t=t, wall=WALL0 + t, x=x, y=y, dx=dx, dy=dy)


def window(t: float, app: str, title: str, window_id: int) -> Window:
    return Window(
        t=t, wall=WALL0 + t, app=app, title=title, pid=1, x=0, y=0, width=800, height=600, window_id=window_id
    )


def frame(t: float, frame_id: str) -> FrameTaken:
    return FrameTaken(
        t=t, wall=WALL0 + t, frame_id=frame_id, left=0, top=0, width=1920, height=1080, trigger="click"
    )


def reduce(events: Sequence[Event]) -> list[Action]:
    return reduce_events(HEADER, sorted(events, key=lambda event: event.t))


def kinds(actions: Sequence[Action]) -> list[str]:
    return [action.kind for action in actions]


# --- clicks -------------------------------------------------------------------------------------------


def test_two_clicks_150_ms_apart_are_one_double_click_at_the_first_position() -> None:
    actions = reduce(click(1.0, 500, 300) + click(1.15, 502, 301))
    assert kinds(actions) == ["double_click"]
    assert (actions[0].x, actions[0].y) == (500, 300)
    assert actions[0].t == 1.0
    assert actions[0].t_end == 1.2


def test_two_clicks_600_ms_apart_are_two_clicks() -> None:
    actions = reduce(click(1.0, 500, 300) + click(1.6, 500, 300))
    assert kinds(actions) == ["click", "click"]
    assert [action.t for action in actions] == [1.0, 1.6]


def test_quick_clicks_far_apart_are_separate_clicks() -> None:
    actions = reduce(click(1.0, 500, 300) + click(1.1, 520, 300))
    assert kinds(actions) == ["click", "click"]


def test_three_quick_clicks_are_a_triple_click_and_four_stay_capped_at_triple() -> None:
    three = reduce(click(1.0, 10, 10) + click(1.2, 10, 10) + click(1.4, 10, 10))
    four = reduce(click(1.0, 10, 10) + click(1.2, 10, 10) + click(1.4, 10, 10) + click(1.6, 10, 10))
    assert kinds(three) == ["triple_click"]
    assert kinds(four) == ["triple_click"]


def test_multi_click_interval_is_measured_from_the_previous_click() -> None:
    # 0.0 → 0.35 → 0.7: each within 400 ms of the one before, the last 700 ms after the first.
    actions = reduce(click(0.0, 10, 10) + click(0.35, 10, 10) + click(0.7, 10, 10))
    assert kinds(actions) == ["triple_click"]


def test_right_and_middle_clicks() -> None:
    actions = reduce(click(1.0, 100, 200, "right") + click(2.0, 300, 400, "middle"))
    assert kinds(actions) == ["right_click", "middle_click"]
    assert (actions[0].x, actions[0].y, actions[1].x, actions[1].y) == (100, 200, 300, 400)


def test_quick_right_clicks_are_not_grouped_into_a_double_click() -> None:
    actions = reduce(click(1.0, 100, 200, "right") + click(1.1, 100, 200, "right"))
    assert kinds(actions) == ["right_click", "right_click"]


def test_small_jitter_while_pressed_is_still_a_click() -> None:
    events: list[Event] = [
        Button(t=1.0, wall=WALL0 + 1, down=True, button="left", x=100, y=100),
        MovePath(t=1.01, wall=WALL0 + 1.01, points=[(102, 101, 0.0), (103, 103, 0.02)]),
        Button(t=1.1, wall=WALL0 + 1.1, down=False, button="left", x=103, y=103),
    ]
    actions = reduce(events)
    assert kinds(actions) == ["click"]
    assert (actions[0].x, actions[0].y) == (100, 100)


def test_drag_of_100_px_has_both_ends_and_its_path() -> None:
    events: list[Event] = [
        Button(t=2.0, wall=WALL0 + 2, down=True, button="left", x=200, y=300),
        MovePath(t=2.05, wall=WALL0 + 2.05, points=[(230, 300, 0.0), (260, 300, 0.05), (295, 300, 0.1)]),
        Button(t=2.3, wall=WALL0 + 2.3, down=False, button="left", x=300, y=300),
    ]
    actions = reduce(events)
    assert kinds(actions) == ["drag"]
    drag = actions[0]
    assert (drag.x, drag.y, drag.end_x, drag.end_y) == (200, 300, 300, 300)
    assert [(x, y) for x, y, _ in drag.path] == [(230, 300), (260, 300), (295, 300), (300, 300)]
    assert all(0 <= offset <= drag.t_end - drag.t + 1e-9 for _, _, offset in drag.path)


def test_drag_that_returns_to_its_start_is_still_a_drag() -> None:
    events: list[Event] = [
        Button(t=2.0, wall=WALL0 + 2, down=True, button="left", x=200, y=300),
        MovePath(t=2.05, wall=WALL0 + 2.05, points=[(260, 300, 0.0), (201, 300, 0.1)]),
        Button(t=2.3, wall=WALL0 + 2.3, down=False, button="left", x=200, y=300),
    ]
    assert kinds(reduce(events)) == ["drag"]


def test_shift_click_keeps_the_held_modifier() -> None:
    events = [key(1.0, "shift_l"), *click(1.1, 50, 60), key(1.3, "shift_l", down=False, modifiers=["shift"])]
    actions = reduce(events)
    assert kinds(actions) == ["click"]
    assert actions[0].keys == ["shift"]


def test_release_without_press_and_press_without_release_produce_nothing() -> None:
    events: list[Event] = [
        Button(t=1.0, wall=WALL0 + 1, down=False, button="left", x=1, y=1),
        Button(t=2.0, wall=WALL0 + 2, down=True, button="right", x=1, y=1),
    ]
    assert reduce(events) == []


# --- keys ---------------------------------------------------------------------------------------------


def test_typing_burst_is_one_type_action_with_shifted_characters_and_spaces() -> None:
    actions = reduce(typed(1.0, "Hello World"))
    assert kinds(actions) == ["type"]
    assert actions[0].text == "Hello World"
    assert actions[0].t == 1.0


def test_backspaces_inside_a_burst_edit_the_text() -> None:
    events = typed(1.0, "helxx") + tap(1.5, "backspace") + tap(1.6, "backspace") + typed(1.7, "lo")
    actions = reduce(events)
    assert kinds(actions) == ["type"]
    assert actions[0].text == "hello"


def test_backspace_with_nothing_left_to_delete_becomes_a_press() -> None:
    events = typed(1.0, "ab") + tap(1.3, "backspace") + tap(1.4, "backspace") + tap(1.5, "backspace")
    actions = reduce(events)
    # "ab" typed and deleted again did nothing; the third backspace deleted something outside the burst.
    assert kinds(actions) == ["press"]
    assert actions[0].keys == ["backspace"]


def test_backspace_after_a_pause_is_a_press() -> None:
    actions = reduce(typed(1.0, "abc") + tap(5.0, "backspace"))
    assert kinds(actions) == ["type", "press"]
    assert actions[0].text == "abc"


def test_enter_and_tab_end_a_burst_and_are_presses() -> None:
    events = typed(1.0, "ls") + tap(1.3, "enter", "\r") + typed(1.5, "pwd") + tap(2.0, "tab", "\t")
    actions = reduce(events)
    assert kinds(actions) == ["type", "press", "type", "press"]
    assert [a.text for a in actions if a.kind == "type"] == ["ls", "pwd"]
    assert [a.keys for a in actions if a.kind == "press"] == [["enter"], ["tab"]]


def test_pause_longer_than_the_burst_gap_splits_typing_and_the_gap_is_configurable() -> None:
    events = typed(1.0, "ab") + typed(4.0, "cd")
    assert [a.text for a in reduce(events)] == ["ab", "cd"]
    merged = reduce_events(HEADER, sorted(events, key=lambda e: e.t), type_gap=5.0)
    assert [a.text for a in merged] == ["abcd"]


def test_ctrl_s_is_a_hotkey_and_modifiers_alone_produce_nothing() -> None:
    events = [
        key(1.0, "ctrl_l"),
        *tap(1.1, "s", "\x13", ["ctrl"]),
        key(1.3, "ctrl_l", down=False, modifiers=["ctrl"]),
        *tap(2.0, "alt"),
        *tap(2.5, "shift"),
    ]
    actions = reduce(events)
    assert kinds(actions) == ["hotkey"]
    assert actions[0].keys == ["ctrl", "s"]


def test_hotkey_modifiers_come_in_canonical_order_and_letters_lowercase() -> None:
    actions = reduce(tap(1.0, "S", "S", ["shift", "ctrl"]) + tap(2.0, "tab", "\t", ["shift"]))
    assert [a.keys for a in actions] == [["ctrl", "shift", "s"], ["shift", "tab"]]
    assert kinds(actions) == ["hotkey", "hotkey"]


def test_hotkey_ends_a_typing_burst() -> None:
    events = typed(1.0, "ab") + tap(1.3, "z", "z", ["ctrl"]) + typed(1.5, "c")
    assert kinds(reduce(events)) == ["type", "hotkey", "type"]


def test_dead_key_and_altgr_do_not_break_the_word_they_help_type() -> None:
    events = [
        *typed(1.0, "caf"),
        *tap(1.3, "dead_´"),
        *tap(1.4, "e", "é"),
        *tap(1.6, "altgr"),
        *tap(1.7, "q", "@"),
    ]
    actions = reduce(events)
    assert kinds(actions) == ["type"]
    assert actions[0].text == "café@"


def test_special_keys_without_modifiers_are_presses() -> None:
    events = tap(1.0, "esc") + tap(2.0, "f5") + tap(3.0, "delete", "\x7f") + tap(4.0, "up")
    actions = reduce(events)
    assert kinds(actions) == ["press"] * 4
    assert [a.keys for a in actions] == [["esc"], ["f5"], ["delete"], ["up"]]


def test_auto_repeat_types_repeated_characters_and_repeats_special_keys() -> None:
    held_a = [key(1.0, "a", "a"), key(1.5, "a", "a"), key(1.53, "a", "a"), key(1.6, "a", "a", down=False)]
    held_down = [key(3.0, "down"), key(3.5, "down"), key(3.53, "down"), key(3.6, "down", down=False)]
    actions = reduce(held_a + held_down)
    assert kinds(actions) == ["type", "press", "press", "press"]
    assert actions[0].text == "aaa"


def test_stuck_modifier_from_an_uncaptured_span_does_not_turn_typing_into_hotkeys() -> None:
    # ctrl went down, its release was lost in a paused span; the recorder's own modifier list says none.
    events = [key(1.0, "ctrl_l"), Marker(t=1.5, wall=WALL0 + 1.5, kind="paused"), *typed(5.0, "ok")]
    actions = reduce(events)
    assert kinds(actions) == ["type"]
    assert actions[0].text == "ok"


# --- scrolls ------------------------------------------------------------------------------------------


def test_neighbouring_scroll_ticks_coalesce_at_the_first_position() -> None:
    actions = reduce([scroll(1.0, 400, 500), scroll(1.1, 405, 502), scroll(1.2, 410, 505)])
    assert kinds(actions) == ["scroll"]
    assert (actions[0].x, actions[0].y, actions[0].dy, actions[0].dx) == (400, 500, -3, 0)
    assert actions[0].t_end == 1.2


def test_scrolls_split_on_pause_distance_and_other_actions() -> None:
    paused = reduce([scroll(1.0, 400, 500), scroll(1.7, 400, 500)])
    moved = reduce([scroll(1.0, 400, 500), scroll(1.1, 400, 560)])
    interrupted = reduce([scroll(1.0, 400, 500), *click(1.05, 10, 10), scroll(1.2, 400, 500)])
    assert kinds(paused) == ["scroll", "scroll"]
    assert kinds(moved) == ["scroll", "scroll"]
    assert kinds(interrupted) == ["scroll", "click", "scroll"]


def test_horizontal_and_vertical_ticks_sum_separately() -> None:
    actions = reduce([scroll(1.0, 10, 10, dy=2), scroll(1.1, 10, 10, dy=1, dx=-1)])
    assert (actions[0].dx, actions[0].dy) == (-1, 3)


def ticks(t: float, x: int, y: int, count: int, dy: int = 0, dx: int = 0, gap: float = 0.05) -> list[Event]:
    """``count`` wheel ticks of (dx, dy) each, ``gap`` seconds apart from ``t``."""
    return [scroll(t + index * gap, x, y, dy=dy, dx=dx) for index in range(count)]


def test_a_scroll_that_turns_back_is_two_steps_each_from_its_own_frame() -> None:
    # 8 ticks down from 1.0 to 1.35, then 3 up from 1.4: well inside the 0.6 s that merges ticks.
    events: list[Event] = [
        frame(1.0, "f-down"),
        *ticks(1.0, 960, 540, 8, dy=-1),
        frame(1.4, "f-up"),
        *ticks(1.4, 960, 540, 3, dy=1),
    ]
    actions = reduce(events)
    assert kinds(actions) == ["scroll", "scroll"]
    assert [(a.dx, a.dy) for a in actions] == [(0, -8), (0, 3)]
    assert [(a.t, a.t_end) for a in actions] == [(1.0, 1.35), (1.4, 1.5)]
    assert [action_code(a, SCREEN) for a in actions] == [
        "pyautogui.scroll(-8, x=0.5, y=0.5)",
        "pyautogui.scroll(3, x=0.5, y=0.5)",
    ]
    assert [a.frame_id for a in actions] == ["f-down", "f-up"]


def test_scrolling_down_and_back_to_the_start_keeps_both_steps() -> None:
    actions = reduce([*ticks(1.0, 400, 500, 4, dy=-1), *ticks(1.2, 400, 500, 4, dy=1)])
    assert [(a.dy, a.t) for a in actions] == [(-4, 1.0), (4, 1.2)]


def test_each_reversal_starts_a_new_scroll() -> None:
    events = [*ticks(1.0, 10, 10, 2, dy=-1), *ticks(1.1, 10, 10, 2, dy=1), *ticks(1.2, 10, 10, 2, dy=-1)]
    assert [a.dy for a in reduce(events)] == [-2, 2, -2]


def test_horizontal_reversal_splits_and_the_other_axis_is_no_reversal() -> None:
    right_then_left = reduce([*ticks(1.0, 10, 10, 4, dx=1), *ticks(1.2, 10, 10, 2, dx=-1)])
    down_then_right = reduce([*ticks(1.0, 10, 10, 3, dy=-1), *ticks(1.15, 10, 10, 2, dx=1)])
    mixed_then_up = reduce([scroll(1.0, 10, 10, dy=-2, dx=1), scroll(1.1, 10, 10, dy=1)])
    assert [(a.dx, a.dy) for a in right_then_left] == [(4, 0), (-2, 0)]
    assert [action_code(a, SCREEN) for a in right_then_left] == [
        "pyautogui.hscroll(4, x=0.0052, y=0.0093)",
        "pyautogui.hscroll(-2, x=0.0052, y=0.0093)",
    ]
    assert [(a.dx, a.dy) for a in down_then_right] == [(2, -3)]
    assert [(a.dx, a.dy) for a in mixed_then_up] == [(1, -2), (0, 1)]


# --- paths, windows, frames ---------------------------------------------------------------------------


def test_movement_alone_is_never_an_action() -> None:
    move = MovePath(t=1.0, wall=WALL0 + 1, points=[(0, 0, 0.0), (500, 500, 0.4)])
    assert reduce([move]) == []


def test_movement_before_a_click_becomes_its_path_with_negative_times() -> None:
    move = MovePath(t=1.0, wall=WALL0 + 1, points=[(0, 0, 0.0), (250, 250, 0.2), (500, 500, 0.4)])
    actions = reduce([move, *click(2.0, 500, 500)])
    assert actions[0].path == [(0, 0, -1.0), (250, 250, -0.8), (500, 500, -0.6)]


def test_each_movement_goes_to_the_next_action_only() -> None:
    first = MovePath(t=1.0, wall=WALL0 + 1, points=[(5, 5, 0.0)])
    second = MovePath(t=3.0, wall=WALL0 + 3, points=[(9, 9, 0.0)])
    actions = reduce([first, *click(2.0, 5, 5), second, *click(4.0, 9, 9)])
    assert [[(x, y) for x, y, _ in a.path] for a in actions] == [[(5, 5)], [(9, 9)]]


def test_actions_carry_the_latest_window_and_their_own_frame() -> None:
    events: list[Event] = [
        window(0.5, "XTerm", "bash", 11),
        frame(1.0, "f-click"),
        *click(1.0, 10, 10),
        window(1.5, "Tk", "Demo Form", 22),
        frame(2.0, "f-key"),
        *tap(2.0, "enter", "\r"),
    ]
    actions = reduce(events)
    assert [(a.window.app if a.window else None) for a in actions] == ["XTerm", "Tk"]
    assert [a.frame_id for a in actions] == ["f-click", "f-key"]


def test_frame_stamped_at_the_action_time_is_used_even_if_recorded_after_it() -> None:
    events: list[Event] = [*click(1.0, 10, 10), frame(1.0, "late-written")]
    assert reduce(events)[0].frame_id == "late-written"


def test_action_before_any_frame_has_none_and_double_click_keeps_its_first_frame() -> None:
    events: list[Event] = [
        *click(1.0, 10, 10),
        frame(3.0, "first"),
        *click(3.0, 50, 50),
        frame(3.1, "second"),
        *click(3.1, 50, 50),
    ]
    actions = reduce(events)
    assert kinds(actions) == ["click", "double_click"]
    assert [a.frame_id for a in actions] == [None, "first"]


def test_marker_ends_a_typing_burst_but_is_not_an_action() -> None:
    events = [*typed(1.0, "ab"), Marker(t=1.25, wall=WALL0 + 1.25, kind="task_end"), *typed(1.3, "cd")]
    actions = reduce(events)
    assert [a.text for a in actions] == ["ab", "cd"]


def test_focus_change_ends_typing_but_not_a_double_click() -> None:
    typing = [window(0.1, "XTerm", "a", 1), *typed(1.0, "ab"), window(1.25, "Tk", "b", 2), *typed(1.3, "cd")]
    title_only = [window(0.1, "XTerm", "a", 1), *typed(1.0, "ab"), window(1.25, "XTerm", "a*", 1)]
    clicking = [
        window(0.1, "XTerm", "a", 1),
        *click(1.0, 5, 5),
        window(1.07, "Tk", "b", 2),
        *click(1.1, 5, 5),
    ]
    assert [a.text for a in reduce(typing)] == ["ab", "cd"]
    assert [a.text for a in reduce([*title_only, *typed(1.3, "cd")])] == ["abcd"]
    assert kinds(reduce(clicking)) == ["double_click"]
