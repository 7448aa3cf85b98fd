"""The processing thread without a display: typed messages in, batches in a real spool out.

The messages are what the listeners, the focus watch, the gate and the echo thread would queue; the
processor runs on the test's thread until the Drain at the end. No frames here (the frame pipeline needs a
screen: every request is declined), so these check which input, window and marker events get written.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from demotrace.capture.masked_echo import EchoReading
from demotrace.capture.messages import (
    ButtonChanged,
    Clock,
    Drain,
    EchoChecked,
    EchoLook,
    FocusChanged,
    GateChanged,
    KeyChanged,
    Message,
    PointerMoved,
    TaskMarked,
)
from demotrace.capture.platform import ScreenLayout, WindowInfo
from demotrace.capture.processor import Processor
from demotrace.device.spool import Spool
from demotrace.model import Button, Event, Key, Marker, Monitor, MovePath, SessionHeader, Window
from demotrace.policy import DEFAULT_LOCAL_POLICY, CaptureGate, CapturePolicy, DeviceState

MS = 1_000_000
LAYOUT = ScreenLayout(1920, 1080, [Monitor(0, 0, 1920, 1080)])
FORM = WindowInfo("DemoForm", "Demo form", 100, 0, 0, 900, 700, window_id=1)
TERMINAL = WindowInfo("XTerm", "demo terminal", 101, 1000, 0, 900, 700, window_id=2)
SIGN_IN = WindowInfo("DemoForm", "Sign in", 100, 200, 200, 400, 300, window_id=3)
PRIVATE = WindowInfo("XTerm", "Mozilla Firefox Private Browsing", 102, 1000, 700, 400, 300, window_id=4)


@dataclass(frozen=True)
class Char:
    """Shaped like pynput's KeyCode for a character key (pynput cannot be imported without a display)."""

    char: str
    vk: int = 0


@dataclass(frozen=True)
class Named:
    """Shaped like pynput's Key (tab, shift ...)."""

    name: str
    value: Char = Char("")


@dataclass(frozen=True)
class LeftButton:
    name: str = "left"


class NoFrames:
    """The frame pipeline needs a screen: decline every request (the processor then waits for none)."""

    def request(self, trigger: str, stamp_ns: int, x: int, y: int, window_id: int) -> bool:
        return False

    def finish(self) -> None:
        pass


class Script:
    """Messages stamped 10 ms apart, as the listeners would stamp them, from 2 s ago: all of it happened
    by the time the processor reads it (the stop marker comes last), within one typing burst's gap."""

    def __init__(self) -> None:
        self.start_ns = time.perf_counter_ns() - 2_000 * MS
        self.ns = self.start_ns
        self.messages: list[Message] = []

    def _next(self) -> int:
        self.ns += 10 * MS
        return self.ns

    def type(self, text: str) -> None:
        for char in text:
            self.messages.append(KeyChanged(self._next(), Char(char, ord(char)), True))
            self.messages.append(KeyChanged(self._next(), Char(char, ord(char)), False))

    def key(self, name: str) -> None:
        self.messages.append(KeyChanged(self._next(), Named(name), True))
        self.messages.append(KeyChanged(self._next(), Named(name), False))

    def click(self, x: int, y: int) -> None:
        self.messages.append(PointerMoved(self._next(), x, y))
        self.messages.append(ButtonChanged(self._next(), x, y, LeftButton(), True))
        self.messages.append(ButtonChanged(self._next(), x, y, LeftButton(), False))

    def focus(self, window: WindowInfo | None) -> None:
        self.messages.append(FocusChanged(self._next(), window))

    def gate(self, state: DeviceState, policy: CapturePolicy = DEFAULT_LOCAL_POLICY) -> None:
        self.messages.append(GateChanged(self._next(), policy, state))

    def mark(self, kind: str, text: str = "") -> None:
        self.messages.append(TaskMarked(self._next(), kind, text))


def process(
    tmp_path: Path,
    script: Script,
    *,
    policy: CapturePolicy = DEFAULT_LOCAL_POLICY,
    window: WindowInfo | None = FORM,
    windows: tuple[WindowInfo, ...] = (FORM, TERMINAL, SIGN_IN, PRIVATE),
    echo: Callable[[EchoLook], EchoReading | None] | None = None,
) -> list[Event]:
    """Run the processor over the script's messages; the events it wrote, in order."""
    events: queue.SimpleQueue[Message] = queue.SimpleQueue()
    for message in script.messages:
        events.put(message)
    events.put(Drain())
    spool = Spool(tmp_path / "spool", bytes(32))
    clock = Clock(script.start_ns, time.time())
    assert script.ns < time.perf_counter_ns(), "a script of at most 200 messages"
    header = SessionHeader("session", "device", "test", 1920, 1080, LAYOUT.monitors, 400, 4, 0.0, 0.0)

    def window_at(x: int, y: int) -> WindowInfo | None:
        return next((w for w in windows if w.x <= x < w.x + w.width and w.y <= y < w.y + w.height), None)

    def look(request: EchoLook) -> None:
        reading = echo(request) if echo is not None and request.typed is not None else None
        if reading is not None:  # as the echo thread answers: on the queue, after what is there already
            events.put(EchoChecked(time.perf_counter_ns(), request.check_id, reading))

    failures: list[str] = []
    Processor(
        events,
        spool,
        header,
        LAYOUT,
        clock,
        CaptureGate(policy, notice_accepted=True),
        NoFrames(),
        window_at=window_at,
        follow_pointer_window=False,
        pointer=(0, 0),
        window=window,
        look=look if echo is not None else None,
        batch_seconds=0.05,
        fail=failures.append,
    ).run()
    assert not failures
    written = [event for batch in spool.batches() for event in batch.events]
    spool.close()
    return written


def typed(events: list[Event]) -> str:
    return "".join(e.char or "" for e in events if isinstance(e, Key) and e.down)


def markers(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.kind, e.text) for e in events if isinstance(e, Marker)]


def test_a_recording_writes_its_window_input_and_a_stop_marker(tmp_path: Path) -> None:
    script = Script()
    script.click(100, 100)
    script.type("hello")
    events = process(tmp_path, script)
    assert [type(e) for e in events[:2]] == [Window, MovePath]
    assert typed(events) == "hello"
    assert [e.down for e in events if isinstance(e, Button)] == [True, False]
    assert markers(events) == [("stop", "")]
    assert [e.t for e in events] == sorted(e.t for e in events)


def test_a_denied_window_is_not_reported_and_its_typing_not_written(tmp_path: Path) -> None:
    script = Script()
    script.type("one")
    script.focus(PRIVATE)
    script.type("secret")
    script.focus(FORM)
    script.type("two")
    events = process(tmp_path, script)
    assert typed(events) == "onetwo"
    assert [e.title for e in events if isinstance(e, Window)] == ["Demo form", "Demo form"]
    assert markers(events) == [("not_captured", "denied title"), ("stop", "")]


def test_the_click_back_from_a_not_allowlisted_window_is_written_after_the_span(tmp_path: Path) -> None:
    policy = CapturePolicy(mode="allowlist", allow_apps=["DemoForm"])
    script = Script()
    script.focus(TERMINAL)
    script.type("xterm")
    script.click(1200, 100)  # in the terminal: dropped
    script.click(100, 100)  # on the form: held until the form takes focus
    script.focus(FORM)
    script.type("back")
    events = process(tmp_path, script, policy=policy)
    assert typed(events) == "back"
    [span_index] = [i for i, e in enumerate(events) if isinstance(e, Marker) and e.kind == "not_captured"]
    after = events[span_index + 1 :]
    assert [(e.x, e.down) for e in after if isinstance(e, Button)] == [(100, True), (100, False)]
    assert [e.app for e in after if isinstance(e, Window)] == ["DemoForm"]
    assert not [e for e in events if isinstance(e, Button) and e.x >= 1000]


def test_a_pause_writes_its_span_then_the_task_markers_held_during_it(tmp_path: Path) -> None:
    script = Script()
    script.mark("task_start", "Mail jane@example.com")
    script.type("a")
    script.gate(DeviceState(notice_accepted=True, paused_until=time.time() + 600))
    script.type("paused")
    script.mark("task_end")
    script.gate(DeviceState(notice_accepted=True))
    script.type("b")
    events = process(tmp_path, script)
    assert typed(events) == "ab"
    assert markers(events) == [
        ("task_start", "Mail <EMAIL>"),
        ("not_captured", "paused"),
        ("task_end", ""),
        ("stop", ""),
    ]


def test_a_task_marker_while_exempt_is_dropped(tmp_path: Path) -> None:
    script = Script()
    script.gate(DeviceState(notice_accepted=True, exempt=True))
    script.mark("task_end")
    script.gate(DeviceState(notice_accepted=True))
    events = process(tmp_path, script)
    assert markers(events) == [("not_captured", "exempt"), ("stop", "")]


def test_a_password_typed_in_a_sign_in_window_leaves_one_marker_and_no_key(tmp_path: Path) -> None:
    script = Script()
    script.type("before")
    script.focus(SIGN_IN)
    script.type("hunter2")
    script.focus(FORM)
    script.type("after")
    events = process(tmp_path, script)
    assert typed(events) == "beforeafter"
    assert markers(events) == [("redacted", "<PASSWORD>"), ("stop", "")]
    opened = next(e.t for e in events if isinstance(e, Window) and e.title == "Sign in")
    closed = max(e.t for e in events if isinstance(e, Window))
    assert not [e for e in events if isinstance(e, Key) and opened <= e.t < closed]  # not even how many


def test_a_masked_echo_cuts_the_field_out_and_keeps_the_user_name(tmp_path: Path) -> None:
    script = Script()
    script.click(100, 100)
    script.type("jane")
    script.key("tab")
    script.type("hunter22")
    script.click(100, 300)
    script.type("notes")

    def screen(request: EchoLook) -> EchoReading:
        masked = request.typed is not None and request.typed.startswith("hunt")  # what dots would read as
        return EchoReading("masked", 4, "dots") if masked else EchoReading("text", 0, "letters")

    events = process(tmp_path, script, echo=screen)
    assert typed(events) == "janenotes"
    assert "tab" in [e.key for e in events if isinstance(e, Key) and e.down]  # the tab stays written
    assert markers(events) == [("redacted", "<PASSWORD>"), ("stop", "")]


def test_no_echo_verdict_in_time_counts_as_a_password(tmp_path: Path) -> None:
    script = Script()
    script.click(100, 100)
    script.type("secret")
    script.click(100, 300)
    script.type("ok")
    events = process(tmp_path, script, echo=lambda request: None)  # the echo thread never answers
    assert typed(events) == "ok"
    assert markers(events) == [("redacted", "<PASSWORD>"), ("stop", "")]
