"""The policy gate's state machine without a display: which markers and clicks are written, and when.

Each transition here is one the X suites (test_recorder_privacy.py) check end to end; these run in
milliseconds. Stamps are perf_counter nanoseconds on a clock that starts at 0; the gate clock (wall
seconds) is passed in where the processor would read it.
"""

from __future__ import annotations

from demotrace.capture.gate_spans import MAX_HELD_CLICK_EVENTS, GateChange, GateSpans
from demotrace.capture.messages import Clock
from demotrace.capture.platform import WindowInfo
from demotrace.model import Button, Marker
from demotrace.policy import DEFAULT_LOCAL_POLICY, CapturePolicy, DeviceState

CLOCK = Clock(start_ns=0, start_wall=1_000.0)
NOW = 5_000.0  # the gate clock's reading (wall seconds) whenever time does not matter
S = 1_000_000_000  # nanoseconds in a second

FORM = WindowInfo("DemoForm", "Demo form", 100, 0, 0, 800, 600, window_id=1)
TERMINAL = WindowInfo("XTerm", "demo terminal", 101, 800, 0, 400, 600, window_id=2)
PRIVATE = WindowInfo("XTerm", "Mozilla Firefox Private Browsing", 102, 0, 600, 400, 200, window_id=3)
ALLOW_FORM = CapturePolicy(mode="allowlist", allow_apps=["DemoForm"])


def started(policy: CapturePolicy = DEFAULT_LOCAL_POLICY, window: WindowInfo | None = FORM) -> GateSpans:
    spans = GateSpans(CLOCK, policy, DeviceState(notice_accepted=True), window)
    spans.refresh(0, NOW)
    return spans


def kinds(markers: list[Marker]) -> list[tuple[str, str]]:
    return [(marker.kind, marker.text) for marker in markers]


def press(ns: int, x: int, y: int, down: bool = True) -> Button:
    return Button(t=CLOCK.t(ns), wall=CLOCK.wall(ns), down=down, button="left", x=x, y=y)


def test_a_recording_in_an_allowed_window_starts_without_a_span() -> None:
    spans = GateSpans(CLOCK, DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True), FORM)
    assert spans.refresh(0, NOW) is None
    assert spans.decision.capture == "all"
    assert spans.close_at_stop(3 * S) == []


def test_a_pause_is_one_marker_stamped_at_its_start_with_its_length() -> None:
    spans = started()
    began = spans.gate_changed(
        DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, paused_until=NOW + 60), 2 * S, NOW
    )
    assert began == GateChange(span_started=True)
    assert not spans.decision.input_allowed
    resumed = spans.gate_changed(DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True), 5 * S, NOW)
    assert resumed is not None and resumed.resumed
    [marker] = resumed.closed_span
    assert (marker.kind, marker.text, marker.t, marker.duration) == ("not_captured", "paused", 2.0, 3.0)
    assert marker.wall == 1_002.0


def test_a_pause_that_runs_out_ends_at_its_own_instant_not_when_it_is_noticed() -> None:
    spans = started()
    spans.gate_changed(
        DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, paused_until=NOW + 2), 1 * S, NOW
    )
    assert spans.expires == NOW + 2
    assert spans.expired_at(2 * S, NOW + 1, 2 * S) is None  # still paused
    # Noticed at 10 s (gate clock 7 s past its end): the span ends 7 s before, at 3 s.
    ended_ns = spans.expired_at(10 * S, NOW + 9, 10 * S)
    assert ended_ns == 3 * S
    change = spans.refresh(ended_ns, NOW + 9)
    assert change is not None
    assert [(m.t, m.duration) for m in change.closed_span] == [(1.0, 2.0)]
    assert spans.expires is None and spans.decision.capture == "all"


def test_a_pause_is_never_said_to_end_before_it_began_or_after_the_message_at_hand() -> None:
    spans = started()
    spans.gate_changed(
        DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, paused_until=NOW + 1), 4 * S, NOW
    )
    assert spans.expired_at(9 * S, NOW + 100, 9 * S) == 4 * S  # the clock jumped far ahead
    assert spans.expired_at(5 * S, NOW + 1.5, 9 * S) == 5 * S


def test_a_change_of_reason_inside_a_span_closes_it_and_opens_the_next() -> None:
    spans = started(ALLOW_FORM)
    spans.focus(TERMINAL, 1 * S, NOW)
    change = spans.gate_changed(
        ALLOW_FORM, DeviceState(notice_accepted=True, paused_until=NOW + 60), 4 * S, NOW
    )
    assert change is not None and change.span_started
    assert [(m.text, m.t, m.duration) for m in change.closed_span] == [("not allowlisted", 1.0, 3.0)]
    [last] = spans.close_at_stop(6 * S)
    assert (last.text, last.t, last.duration) == ("paused", 4.0, 2.0)


def test_focus_on_a_denied_window_stops_input_and_focus_back_resumes_it() -> None:
    spans = started()
    change = spans.focus(PRIVATE, 1 * S, NOW)
    assert change is not None and change.span_started
    assert not spans.decision.input_allowed  # the processor does not report this window at all
    assert spans.focus(FORM, 2 * S, NOW) == GateChange(
        closed_span=[Marker(t=1.0, wall=1_001.0, kind="not_captured", text="denied title", duration=1.0)],
        resumed=True,
        screen_back=True,
    )
    assert spans.decision.capture == "all"


def test_a_stop_inside_a_span_writes_its_marker() -> None:
    spans = started()
    spans.gate_changed(DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, exempt=True), 1 * S, NOW)
    assert kinds(spans.close_at_stop(3 * S)) == [("not_captured", "exempt")]


def test_task_markers_during_a_span_follow_its_marker_in_order() -> None:
    spans = started()
    first = spans.task_marker(1 * S, "task_start", "Fill in the form for jane@example.com")
    assert first is not None and (first.kind, first.text) == ("task_start", "Fill in the form for <EMAIL>")
    spans.gate_changed(
        DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, paused_until=NOW + 60), 2 * S, NOW
    )
    assert spans.task_marker(3 * S, "task_end", "") is None  # held
    assert spans.task_marker(4 * S, "task_start", "next") is None
    change = spans.gate_changed(DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True), 5 * S, NOW)
    assert change is not None
    assert kinds(change.closed_span) == [("not_captured", "paused"), ("task_end", ""), ("task_start", "next")]
    assert [m.t for m in change.closed_span] == [2.0, 3.0, 4.0]


def test_task_markers_while_exempt_are_dropped() -> None:
    spans = started()
    spans.gate_changed(DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, exempt=True), 1 * S, NOW)
    assert spans.task_marker(2 * S, "task_end", "") is None
    change = spans.gate_changed(DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True), 3 * S, NOW)
    assert change is not None and kinds(change.closed_span) == [("not_captured", "exempt")]


def test_low_battery_in_input_only_mode_writes_one_marker_and_stops_frames() -> None:
    policy = CapturePolicy(low_battery_percent=20, low_battery_mode="input_only")
    spans = started(policy)
    low = DeviceState(notice_accepted=True, on_battery=True, battery_percent=10)
    change = spans.gate_changed(policy, low, 1 * S, NOW)
    assert change is not None and not change.span_started
    assert change.input_only_marker is not None
    assert (change.input_only_marker.kind, change.input_only_marker.text) == ("input_only", "low battery")
    assert spans.decision.input_allowed and not spans.decision.screen_allowed
    assert (
        spans.gate_changed(
            policy, DeviceState(notice_accepted=True, on_battery=True, battery_percent=9), 2 * S, NOW
        )
        is None
    )
    back = spans.gate_changed(policy, DeviceState(notice_accepted=True), 3 * S, NOW)
    assert back == GateChange(screen_back=True)  # no span: input was captured all along


def test_a_press_on_a_window_that_may_not_be_captured_is_dropped_with_its_release() -> None:
    spans = started(ALLOW_FORM)
    assert not spans.allows_input_to(TERMINAL, NOW)
    assert not spans.press_written(press(1 * S, 900, 100), False, TERMINAL.window_id)
    assert not spans.release_written(press(2 * S, 900, 100, down=False))
    assert spans.allows_input_to(FORM, NOW)
    assert spans.press_written(press(3 * S, 100, 100), True, FORM.window_id)
    assert spans.release_written(press(4 * S, 100, 100, down=False))


def test_the_click_that_brings_the_person_back_is_written_after_the_span_marker() -> None:
    spans = started(ALLOW_FORM)
    spans.focus(TERMINAL, 1 * S, NOW)
    down, up = press(2 * S, 100, 100), press(2 * S + 50_000_000, 100, 100, down=False)
    assert not spans.press_written(down, True, FORM.window_id)  # held, not written yet
    assert not spans.release_written(up)
    change = spans.focus(FORM, 3 * S, NOW)
    assert change is not None and change.resumed
    assert kinds(change.closed_span) == [("not_captured", "not allowlisted")]
    assert change.released_clicks == [down, up]


def test_a_held_click_on_another_window_than_the_one_focused_next_is_forgotten() -> None:
    spans = started(ALLOW_FORM)
    other_form = WindowInfo("DemoForm", "Another form", 103, 0, 0, 300, 300, window_id=4)
    spans.focus(TERMINAL, 1 * S, NOW)
    spans.press_written(press(2 * S, 100, 100), True, other_form.window_id)
    spans.release_written(press(2 * S, 100, 100, down=False))
    change = spans.focus(FORM, 3 * S, NOW)
    assert change is not None and change.resumed and change.released_clicks == []


def test_clicks_are_not_held_through_a_pause_only_through_a_denied_window() -> None:
    spans = started()
    spans.gate_changed(
        DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True, paused_until=NOW + 60), 1 * S, NOW
    )
    spans.press_written(press(2 * S, 100, 100), True, FORM.window_id)
    assert not spans.release_written(press(2 * S, 100, 100, down=False))
    change = spans.gate_changed(DEFAULT_LOCAL_POLICY, DeviceState(notice_accepted=True), 3 * S, NOW)
    assert change is not None and change.released_clicks == []


def test_only_the_last_few_held_click_events_are_kept() -> None:
    spans = started(ALLOW_FORM)
    spans.focus(TERMINAL, 1 * S, NOW)
    presses = [press(2 * S + i, 100, 100 + i) for i in range(MAX_HELD_CLICK_EVENTS + 3)]
    for event in presses:
        spans.press_written(event, True, FORM.window_id)
    change = spans.focus(FORM, 3 * S, NOW)
    assert change is not None and change.released_clicks == presses[-MAX_HELD_CLICK_EVENTS:]


def test_a_new_span_forgets_the_clicks_held_in_the_one_before() -> None:
    spans = started(ALLOW_FORM)
    spans.focus(TERMINAL, 1 * S, NOW)
    spans.press_written(press(2 * S, 100, 100), True, FORM.window_id)
    spans.gate_changed(ALLOW_FORM, DeviceState(notice_accepted=True, paused_until=NOW + 60), 3 * S, NOW)
    spans.focus(FORM, 4 * S, NOW)
    change = spans.gate_changed(ALLOW_FORM, DeviceState(notice_accepted=True), 5 * S, NOW)
    assert change is not None and change.resumed and change.released_clicks == []
