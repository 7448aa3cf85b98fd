"""Password bursts and the masked-echo wait without a display: which keys are kept out, which markers stand.

The X suites (test_recorder_privacy.py, test_recorder_masked_echo.py) check the same rules end to end;
these drive the state machine directly, in milliseconds. Stamps are perf_counter nanoseconds on a clock
that starts at 0; ``now`` is the perf_counter reading (seconds) the processor would pass.
"""

from __future__ import annotations

from demotrace.capture.masked_echo import EchoReading
from demotrace.capture.messages import Clock, EchoLook
from demotrace.capture.password import (
    DROPPED,
    ECHO_BAND_HALF_HEIGHT,
    ECHO_FIRST_CHECK_KEYS,
    ECHO_MAX_CHECKS,
    ECHO_RECHECK_KEYS,
    ECHO_RENDER_SECONDS,
    ECHO_VERDICT_TIMEOUT_SECONDS,
    WRITTEN,
    PasswordBursts,
    PasswordProbe,
)
from demotrace.capture.platform import WindowInfo

CLOCK = Clock(start_ns=0, start_wall=1_000.0)
GAP_S = 10.0  # the typing burst gap
MS = 1_000_000  # nanoseconds in a millisecond
FORM = WindowInfo("DemoForm", "Demo form", 100, 100, 50, 800, 600, window_id=1)
MASKED = EchoReading("masked", 4, "a row of identical glyphs")
TEXT = EchoReading("text", 0, "glyphs differ")
UNDECIDED = EchoReading("undecided", 0, "cannot tell")


def bursts(*probes: PasswordProbe, echo: bool = True) -> PasswordBursts:
    return PasswordBursts(CLOCK, GAP_S, (1920, 1080), probes, echo=echo)


def type_keys(
    machine: PasswordBursts, text: str, start_ns: int, *, burst_t: float, now: float = 0.0
) -> list[EchoLook]:
    """Printable keys pressed 10 ms apart into the burst that started at ``burst_t``; the looks asked for."""
    looks: list[EchoLook] = []
    for index, char in enumerate(text):
        looks += machine.watch(
            char, char, start_ns + index * 10 * MS, burst_start_t=burst_t, window=FORM, now=now
        )
    return looks


# -- password windows and probes ----------------------------------------------------------------------


def test_a_burst_in_a_password_window_is_one_marker_at_its_first_key_and_no_key() -> None:
    machine = bursts()
    machine.in_password_window = True
    first = machine.key(True, True, 100 * MS, burst_open=False, window=FORM)
    assert first.dropped and first.marker is not None
    assert (first.marker.kind, first.marker.text, first.marker.t) == ("redacted", "<PASSWORD>", 0.1)
    rest = [
        machine.key(down, True, (110 + i) * MS, burst_open=True, window=FORM)
        for i, down in enumerate([False, True, False])
    ]
    assert rest == [DROPPED, DROPPED, DROPPED]  # neither the keys nor how many: no second marker


def test_a_release_in_a_password_window_outside_a_burst_is_dropped_too() -> None:
    machine = bursts()
    machine.in_password_window = True
    assert machine.key(False, False, 100 * MS, burst_open=False, window=FORM) == DROPPED


def test_a_pause_longer_than_the_gap_starts_a_second_burst_with_its_own_marker() -> None:
    machine = bursts()
    machine.in_password_window = True
    machine.key(True, True, 0, burst_open=False, window=FORM)
    later = machine.key(True, True, int((GAP_S + 1) * 1e9), burst_open=False, window=FORM)
    assert later.dropped and later.marker is not None and later.marker.t == GAP_S + 1


def test_outside_a_password_window_keys_are_written() -> None:
    machine = bursts()
    assert machine.key(True, True, 0, burst_open=False, window=FORM) == WRITTEN
    assert machine.key(False, True, MS, burst_open=True, window=FORM) == WRITTEN


def test_a_click_ends_the_password_burst_so_the_next_key_in_a_plain_window_is_written() -> None:
    machine = bursts()
    machine.in_password_window = True
    machine.key(True, True, 0, burst_open=False, window=FORM)
    machine.end()
    machine.in_password_window = False
    assert machine.key(True, True, MS, burst_open=False, window=FORM) == WRITTEN


def test_a_probe_that_says_password_makes_the_burst_a_password() -> None:
    asked: list[WindowInfo | None] = []

    def probe(window: WindowInfo | None) -> bool | None:
        asked.append(window)
        return True

    machine = bursts(probe)
    fate = machine.key(True, True, 0, burst_open=False, window=FORM)
    assert fate.dropped and fate.marker is not None
    assert asked == [FORM]


def test_probes_are_asked_only_at_the_first_typed_key_of_a_burst() -> None:
    asked: list[WindowInfo | None] = []

    def probe(window: WindowInfo | None) -> bool | None:
        asked.append(window)
        return None  # cannot tell

    machine = bursts(probe)
    assert machine.key(True, False, 0, burst_open=False, window=FORM) == WRITTEN  # shift: types nothing
    assert machine.key(True, True, MS, burst_open=True, window=FORM) == WRITTEN  # inside a burst
    assert asked == []
    assert machine.key(True, True, 2 * MS, burst_open=False, window=FORM) == WRITTEN
    assert asked == [FORM]


# -- masked echo ----------------------------------------------------------------------------------------


def test_the_first_printable_key_looks_at_the_area_and_the_fourth_at_its_echo() -> None:
    machine = bursts()
    machine.clicked(400, 300, FORM.window_id)
    looks = type_keys(machine, "abc", 0, burst_t=0.0)
    area = {
        "left": 100,
        "top": 300 - ECHO_BAND_HALF_HEIGHT,
        "width": 800,
        "height": 2 * ECHO_BAND_HALF_HEIGHT,
    }
    assert looks == [EchoLook(1, area, None)]
    assert not machine.waiting
    looks = machine.watch("d", "d", 30 * MS, burst_start_t=0.0, window=FORM, now=7.0)
    assert ECHO_FIRST_CHECK_KEYS == 4
    assert looks == [EchoLook(1, area, "abcd", 7.0 + ECHO_RENDER_SECONDS)]
    assert machine.waiting and machine.deadline == 7.0 + ECHO_VERDICT_TIMEOUT_SECONDS


def test_without_a_click_in_it_the_whole_focused_window_is_looked_at() -> None:
    machine = bursts()
    [look] = type_keys(machine, "a", 0, burst_t=0.0)
    assert look.area == {"left": 100, "top": 50, "width": 800, "height": 600}


def test_a_masked_verdict_cuts_the_burst_at_the_fields_first_key() -> None:
    machine = bursts()
    machine.watch("shift", None, 5 * MS, burst_start_t=0.0, window=FORM, now=0.0)  # a shift first: it counts
    type_keys(machine, "Pass", 10 * MS, burst_t=0.0)
    marker = machine.verdict(1, MASKED, last_key_t=0.04)
    assert marker is not None and (marker.kind, marker.text, marker.t) == ("redacted", "<PASSWORD>", 0.005)
    assert not machine.waiting
    # The rest of the burst is a password burst: its keys are dropped, with no second marker.
    assert machine.key(True, True, 50 * MS, burst_open=True, window=FORM) == DROPPED


def test_a_text_verdict_keeps_the_keys_and_looks_no_more_in_that_field() -> None:
    machine = bursts()
    type_keys(machine, "abcd", 0, burst_t=0.0)
    assert machine.verdict(1, TEXT, last_key_t=0.03) is None
    assert not machine.waiting
    assert type_keys(machine, "efghijkl", 40 * MS, burst_t=0.0) == []
    assert machine.key(True, True, 200 * MS, burst_open=True, window=FORM) == WRITTEN


def test_undecided_looks_again_after_a_few_more_keys_at_most_three_times() -> None:
    machine = bursts()
    type_keys(machine, "abcd", 0, burst_t=0.0)
    typed = 4
    for check in range(1, ECHO_MAX_CHECKS):
        assert machine.verdict(1, UNDECIDED, last_key_t=None) is None
        assert type_keys(machine, "x" * (ECHO_RECHECK_KEYS - 1), typed * 10 * MS, burst_t=0.0) == []
        typed += ECHO_RECHECK_KEYS - 1
        [look] = type_keys(machine, "y", typed * 10 * MS, burst_t=0.0)
        typed += 1
        assert look.typed is not None and len(look.typed) == 4 + check * ECHO_RECHECK_KEYS
    assert machine.verdict(1, UNDECIDED, last_key_t=None) is None
    assert type_keys(machine, "z" * 10, typed * 10 * MS, burst_t=0.0) == []  # settled: no fourth look
    assert not machine.waiting


def test_backspace_takes_a_key_back_before_the_look() -> None:
    machine = bursts()
    type_keys(machine, "abc", 0, burst_t=0.0)
    machine.watch("backspace", None, 30 * MS, burst_start_t=0.0, window=FORM, now=0.0)
    assert type_keys(machine, "d", 40 * MS, burst_t=0.0) == []  # three keys in the field again
    [look] = type_keys(machine, "e", 50 * MS, burst_t=0.0)
    assert look.typed == "abde"


def test_a_tab_moves_to_another_field_with_a_look_of_its_own() -> None:
    machine = bursts()
    type_keys(machine, "jane", 0, burst_t=0.0)
    assert machine.verdict(1, TEXT, last_key_t=0.03) is None
    machine.watch("tab", "\t", 40 * MS, burst_start_t=0.0, window=FORM, now=0.0)
    looks = type_keys(machine, "se", 50 * MS, burst_t=0.0)
    assert [(look.check_id, look.typed) for look in looks] == [(2, None)]
    type_keys(machine, "cr", 70 * MS, burst_t=0.0)
    marker = machine.verdict(2, MASKED, last_key_t=0.08)
    # The cut starts at the new field's first key: the user name and the tab stay written.
    assert marker is not None and marker.t == 0.05


def test_no_verdict_by_the_deadline_counts_as_a_password() -> None:
    machine = bursts()
    type_keys(machine, "abcd", 0, burst_t=0.0, now=3.0)
    assert machine.overdue(3.0 + ECHO_VERDICT_TIMEOUT_SECONDS / 2, last_key_t=0.03) is None
    assert machine.waiting
    marker = machine.overdue(3.0 + ECHO_VERDICT_TIMEOUT_SECONDS, last_key_t=0.03)
    assert marker is not None and marker.text == "<PASSWORD>"
    assert not machine.waiting
    assert machine.verdict(1, TEXT, last_key_t=0.03) is None  # too late: the timeout settled it


def test_a_new_burst_starts_a_new_field() -> None:
    machine = bursts()
    type_keys(machine, "ab", 0, burst_t=0.0)
    looks = type_keys(machine, "cd", 20 * MS, burst_t=15.0)
    assert [(look.check_id, look.typed) for look in looks] == [(2, None)]


def test_without_the_echo_check_nothing_is_looked_at() -> None:
    machine = bursts(echo=False)
    assert type_keys(machine, "abcdefgh", 0, burst_t=0.0) == []
    assert not machine.waiting and machine.deadline is None
