"""The processing thread: queued messages -> decided, redacted model events -> batches in the sink.

It waits on the event queue with a timeout only while something is unflushed or a deadline is pending
(a batch due, a typing burst going quiet, a pause ending, a masked-echo verdict, a browser report that
follows a focus change or a click: :mod:`~demotrace.capture.page_events`), so nothing wakes up
while the user is idle. Per message it keeps the pointer path, asks for frames, and asks the pure state
machines (:mod:`~demotrace.capture.gate_spans`: what the policy gate lets through;
:mod:`~demotrace.capture.password`: password bursts, the masked-echo wait) what to write, in memory,
before :class:`~demotrace.capture.batches.RedactedOutput` (typed-text redaction, then batches).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from demotrace.capture import keys as key_names
from demotrace.capture import triggers
from demotrace.capture.batches import PendingBatch, RedactedOutput
from demotrace.capture.browser_pages import BrowserPages
from demotrace.capture.gate_spans import GateChange, GateSpans
from demotrace.capture.messages import (
    BrowserReported,
    ButtonChanged,
    Clock,
    Drain,
    EchoChecked,
    EchoLook,
    FocusChanged,
    FrameDone,
    GateChanged,
    KeyChanged,
    Message,
    PointerMoved,
    Queued,
    Scrolled,
    TaskMarked,
    built,
)
from demotrace.capture.page_events import PageEvents
from demotrace.capture.password import PasswordBursts, PasswordProbe
from demotrace.capture.paths import TimedPoint, relative_path
from demotrace.capture.platform import ScreenLayout, WindowInfo, window_event
from demotrace.capture.sink import RecordSink, SinkError
from demotrace.model import Button, ButtonName, Key, Marker, MovePath, Scroll, SessionHeader
from demotrace.policy import CaptureGate, is_password_window
from demotrace.protocol import STOP_MARKER_KIND
from demotrace.threads import name_os_thread

log = logging.getLogger(__name__)

# A pointer path is cut after this many raw points (~4 s of motion at 125 Hz): bounds memory and the
# simplifier's worst case (quadratic in a path's points).
MAX_RAW_PATH_POINTS = 500
_BUTTON_NAMES: dict[str, ButtonName] = {"left": "left", "right": "right", "middle": "middle"}


class Processor:
    """Queue -> decided, redacted model events -> batches. All state here is touched by the processing
    thread only (``run``, on the thread ``start`` starts)."""

    def __init__(
        self,
        events: queue.SimpleQueue[Queued],
        sink: RecordSink,
        header: SessionHeader,
        layout: ScreenLayout,
        clock: Clock,
        gate: CaptureGate,
        frames: triggers.FrameRequests,
        *,
        window_at: Callable[[int, int], WindowInfo | None],
        follow_pointer_window: bool,
        pointer: tuple[int, int],
        window: WindowInfo | None,
        password_probes: Sequence[PasswordProbe] = (),
        look: Callable[[EchoLook], None] | None = None,
        pages: BrowserPages | None = None,
        visible_windows: Callable[[], list[WindowInfo]] = list,
        batch_seconds: float = 1.0,
        batch_max_events: int = 500,
        fail: Callable[[str], None],
    ) -> None:
        self._events = events
        self._out = RedactedOutput(PendingBatch(sink, header, batch_seconds, batch_max_events))
        self._layout = layout
        self._clock = clock
        self._gate = gate
        self._frames = frames
        self._window_at = window_at
        self._visible_windows = visible_windows
        self._follow_pointer_window = follow_pointer_window
        self._pointer = pointer
        self._look = look
        self._fail = fail
        self._path: list[TimedPoint] = []
        self._path_start_ns = 0
        self._held: frozenset[str] = frozenset()
        self._triggers = triggers.TriggerState()
        self._double_click_s = header.double_click_ms / 1000
        self._double_click_px = header.double_click_px
        self._frames_in_flight = 0
        self._last_window: tuple[int, str, str | None] | None = None
        self._window_id = 0  # of the window last reported; a frame asked for now is of that window
        # The privacy gate: the window events are decided against, and the decision in force.
        self._spans = GateSpans(clock, gate.policy, gate.state, window, pages)
        self._pages = PageEvents(clock, self._spans.pages)  # what the browser extension reports
        self._dropped_presses: set[str] = set()  # keys whose press was not written: drop their release
        self._target_cache: tuple[tuple[int, int], tuple[bool, int]] | None = None
        self._passwords = PasswordBursts(
            clock,
            self._out.redactor.gap_s,
            (layout.width, layout.height),
            (*password_probes, self._pages.sensitive_field),
            echo=look is not None,
        )
        self._stalled: deque[Message] = deque()  # held while a masked-echo verdict is awaited
        self._draining = False
        self._thread = threading.Thread(target=self._run_thread, name="demotrace-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    # -- writing -------------------------------------------------------------------------------

    def _close_path(self) -> None:
        if not self._path:
            return
        ns = self._path_start_ns
        points = relative_path(self._path)
        self._path = []
        self._out.emit(MovePath(t=self._clock.t(ns), wall=self._clock.wall(ns), points=points))

    def _request_frame(self, trigger: str, stamp_ns: int) -> None:
        if not self._spans.decision.screen_allowed:
            return
        x, y = self._pointer
        if self._frames.request(trigger, stamp_ns, x, y, self._window_id):
            self._frames_in_flight += 1

    def _note_window(self, info: WindowInfo | None, stamp_ns: int, *, force: bool = False) -> None:
        context = self._spans.context() if self._spans.policy.record_urls else None
        url = context.url if context is not None else None
        identity = (0, "", None) if info is None else (info.window_id, info.title, url)
        if identity == self._last_window and not force:
            return
        self._last_window = identity
        self._window_id = identity[0]
        clock = self._clock
        self._out.emit(window_event(info, self._layout, clock.t(stamp_ns), clock.wall(stamp_ns), url))

    def _decide_frame(self, kind: triggers.InputKind, stamp_ns: int, **facts: Any) -> None:
        if not self._spans.decision.screen_allowed:
            return
        trigger, self._triggers = triggers.frame_trigger(
            self._triggers,
            kind,
            stamp_ns / 1e9,
            double_click_seconds=self._double_click_s,
            double_click_px=self._double_click_px,
            **facts,
        )
        if trigger is not None:
            self._request_frame(trigger, stamp_ns)

    # -- the privacy gate ----------------------------------------------------------------------

    def _decided(self, change: GateChange | None, ns: int) -> None:
        """After the gate decided again (at ``ns``): act on what its change asks for."""
        spans = self._spans
        self._passwords.in_password_window = is_password_window(spans.policy, spans.context())
        self._target_cache = None
        if change is None:
            return
        for marker in change.closed_span:
            self._out.emit(marker)
        if change.span_started:
            # What was captured before the span is complete: write it; from here on nothing is kept.
            self._close_path()
            self._out.end_burst()
            self._passwords.end()
            return
        if change.resumed:
            self._note_window(spans.window, ns, force=True)
            self._close_path()
            for click in change.released_clicks:
                self._out.emit(click)
        if change.input_only_marker is not None:
            self._out.emit(change.input_only_marker)
        if change.screen_back:
            self._triggers = triggers.TriggerState()  # the next action gets a fresh frame

    def _check_expiry(self, ns: int) -> None:
        """A pause that ran out ends at its own instant, even if we only notice it now."""
        spans = self._spans
        if spans.expires is None:
            return
        ended_ns = spans.expired_at(ns, self._gate.clock(), time.perf_counter_ns())
        if ended_ns is not None:
            self._decided(spans.refresh(ended_ns, self._gate.clock()), ended_ns)

    def _set_window(self, info: WindowInfo | None, ns: int) -> None:
        self._pages.focus_changed(info, time.perf_counter())
        self._decided(self._spans.focus(info, ns, self._gate.clock()), ns)
        if self._spans.decision.input_allowed:
            self._note_window(info, ns)

    def _target_allowed(self, x: int, y: int) -> tuple[bool, int]:
        """May input to the window under the pointer be captured (and that window's id)? A click or a
        scroll lands there, whichever window has focus. Without a window manager the focused window is
        the one under the pointer already."""
        window = self._spans.window
        if self._follow_pointer_window:
            return True, window.window_id if window is not None else 0
        if self._target_cache is not None and self._target_cache[0] == (x, y):
            return self._target_cache[1]
        target = self._window_at(x, y)
        stack = self._visible_windows() if self._spans.pages.state_of(target) is not None else []
        allowed = self._spans.allows_input_to(target, self._gate.clock(), stack)
        answer = (allowed, target.window_id if target else 0)
        self._target_cache = ((x, y), answer)
        return answer

    # -- one message ---------------------------------------------------------------------------

    def _on_move(self, message: PointerMoved) -> None:
        ns, x, y = message.ns, message.x, message.y
        self._pointer = (x, y)
        if not self._spans.decision.input_allowed:
            return
        if not self._path:
            self._path_start_ns = ns
            self._out.batch.unflushed_since(ns)
        self._path.append((x, y, ns / 1e9))
        if len(self._path) >= MAX_RAW_PATH_POINTS:
            self._close_path()

    def _on_button(self, message: ButtonChanged) -> None:
        ns, x, y, pressed = message.ns, message.x, message.y, message.pressed
        self._pointer = (x, y)
        name = _BUTTON_NAMES.get(getattr(message.button, "name", ""))
        if name is None:
            return  # back/forward and other extra buttons have no place in the action vocabulary
        if pressed and self._follow_pointer_window:
            self._set_window(self._window_at(x, y), ns)
        clock, spans = self._clock, self._spans
        event = Button(t=clock.t(ns), wall=clock.wall(ns), down=bool(pressed), button=name, x=x, y=y)
        if pressed:
            self._target_cache = None  # a click may raise or open windows: look again next time
            if not spans.press_written(event, *self._target_allowed(x, y)):
                return
        elif not spans.release_written(event):
            return
        self._close_path()
        self._passwords.end()
        if pressed:
            self._pages.pressed(spans.window, time.perf_counter())
            self._passwords.clicked(x, y, spans.window.window_id if spans.window is not None else 0)
            self._decide_frame("button_down", ns, x=x, y=y, button=name)
        else:
            self._decide_frame("button_up", ns)
        self._out.emit(event)

    def _on_scroll(self, message: Scrolled) -> None:
        ns, x, y = message.ns, message.x, message.y
        self._pointer = (x, y)
        if not self._spans.decision.input_allowed or not self._target_allowed(x, y)[0]:
            return
        self._close_path()
        self._passwords.end()
        self._decide_frame("scroll", ns, dx=message.dx, dy=message.dy)
        clock = self._clock
        self._out.emit(Scroll(t=clock.t(ns), wall=clock.wall(ns), x=x, y=y, dx=message.dx, dy=message.dy))

    def _on_key(self, message: KeyChanged) -> None:
        ns, down = message.ns, message.down
        info = key_names.describe_key(key_names.raw_key_of(message.key))
        modifiers = key_names.modifiers_held(self._held, excluding=info.key)
        # Modifier bookkeeping goes on while nothing is written, so modifiers are right on resume.
        self._held = key_names.press_modifiers(self._held, info.key, down)
        if not self._spans.decision.input_allowed:
            if down:
                self._dropped_presses.add(info.key)
            return
        if not down and info.key in self._dropped_presses:
            self._dropped_presses.discard(info.key)
            return
        char = key_names.typed_char(info, modifiers, down)
        window = self._spans.window
        fate = self._passwords.key(
            down, char is not None, ns, burst_open=self._out.redactor.open, window=window
        )
        if fate.marker is not None:
            self._decide_frame("key_down", ns)  # the screen before the password is typed
            self._close_path()
            self._out.emit(fate.marker)
        if fate.dropped:
            if down:
                self._dropped_presses.add(info.key)
            return
        self._close_path()
        if down:
            is_modifier = info.key in key_names.MODIFIER_OF_KEY
            hotkey = key_names.is_hotkey(info.key, modifiers)
            self._decide_frame("modifier_down" if is_modifier else "key_down", ns, hotkey=hotkey)
        clock = self._clock
        self._out.emit(
            Key(
                t=clock.t(ns),
                wall=clock.wall(ns),
                down=down,
                key=info.key,
                keysym=info.keysym,
                char=char,
                modifiers=modifiers,
            )
        )
        if down:
            burst_t, now = self._out.burst_start_t, time.perf_counter()
            for look in self._passwords.watch(
                info.key, char, ns, burst_start_t=burst_t, window=window, now=now
            ):
                if self._look is not None:
                    self._look(look)

    def _on_task_marker(self, message: TaskMarked) -> None:
        marker = self._spans.task_marker(message.ns, message.kind, message.text)
        if marker is not None:
            self._passwords.end()
            self._close_path()
            self._out.emit(marker)

    def _on_browser(self, message: BrowserReported) -> None:
        """A browser report: decide again (the page may have changed), then write the window (its URL)
        and the element clicked or focused; typing into a password field ends the burst (see probes)."""
        spans = self._spans
        record = spans.policy.record_page_elements and spans.decision.input_allowed
        report, ns = message.report, message.ns
        news = self._pages.take(message.pid, report, ns, window=spans.window, record_elements=record)
        self._decided(spans.refresh(ns, self._gate.clock()), ns)
        if spans.decision.input_allowed:
            self._note_window(spans.window, ns)
            if news.sensitive_focus:
                self._out.end_burst()
                self._passwords.end()
            if news.element is not None:
                self._close_path()
                self._out.emit(news.element)

    def _hide_password(self, marker: Marker | None) -> None:
        """A field takes a password: cut its keys out of the held burst, as if typed in a password
        window (one marker at its first key, the rest of the burst's keys dropped as they come)."""
        if marker is not None:
            self._dropped_presses |= self._out.cut_password(marker)

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, FrameDone):
            self._frames_in_flight -= 1
            if message.taken is not None:
                self._out.emit(message.taken)
            return
        if isinstance(message, Drain):
            self._draining = True
            self._frames.finish()  # every requested frame is now on the queue
            return
        self._check_expiry(message.ns)
        match message:
            case PointerMoved():
                self._on_move(message)
            case KeyChanged():
                self._on_key(message)
            case ButtonChanged():
                self._on_button(message)
            case Scrolled():
                self._on_scroll(message)
            case FocusChanged():
                self._passwords.end()
                self._set_window(message.window, message.ns)
            case GateChanged():
                change = self._spans.gate_changed(
                    message.policy, message.state, message.ns, self._gate.clock()
                )
                self._decided(change, message.ns)
            case TaskMarked():
                self._on_task_marker(message)
            case BrowserReported():
                self._on_browser(message)
            case EchoChecked():
                pass  # taken before dispatch (see run)

    def _on_time_passed(self) -> None:
        """Deadlines of the queue wait: a pause that ends, a typing burst that went quiet."""
        if self._passwords.waiting:
            return  # everything waits for the masked-echo verdict
        self._pages.overdue(time.perf_counter())
        now_ns = time.perf_counter_ns()
        self._check_expiry(now_ns)
        self._out.flush_if_quiet(self._clock.t(now_ns))

    # -- batching ------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._close_path()
        self._out.write()

    def _wait_timeout(self) -> float | None:
        """Seconds to wait for a message: until the next batch is due, the held typing burst goes quiet
        or a pause ends; None (no wake-up) if none of these is pending."""
        now = time.perf_counter()
        waits: list[float] = []
        batch = self._out.batch
        first_unflushed_ns = batch.first_unflushed_ns
        if first_unflushed_ns is not None:
            remaining = first_unflushed_ns / 1e9 + batch.batch_seconds - now
            # An overdue batch waits for its frame's FrameTaken (a message), so t stays ordered.
            if remaining > 0 or self._frames_in_flight == 0:
                waits.append(remaining)
        deadline = self._passwords.deadline
        if deadline is not None:
            waits.append(deadline - now)  # the other deadlines wait for the verdict
        elif self._pages.deadline is not None:
            waits.append(self._pages.deadline - now)
        else:
            quiet_at = self._out.quiet_at()
            if quiet_at is not None:
                waits.append(quiet_at - now)
            if self._spans.expires is not None:
                waits.append(self._spans.expires - self._gate.clock())
        return max(min(waits), 0.0) if waits else None

    def _run_thread(self) -> None:
        name_os_thread()
        self.run()

    def run(self) -> None:
        """Process messages until a Drain and every frame it waits for; then write the rest and stop."""
        events, passwords, pages = self._events, self._passwords, self._pages
        try:
            start_ns = self._clock.start_ns
            self._decided(self._spans.refresh(start_ns, self._gate.clock()), start_ns)
            if self._spans.decision.input_allowed:
                self._note_window(self._spans.window, start_ns)
            self._request_frame("start", start_ns)
            while True:
                timeout = self._wait_timeout()
                try:
                    message = built(events.get() if timeout is None else events.get(timeout=timeout))
                except queue.Empty:
                    message = None
                if isinstance(message, EchoChecked):
                    self._hide_password(
                        passwords.verdict(message.check_id, message.reading, self._out.last_key_t)
                    )
                elif isinstance(message, BrowserReported) and not passwords.waiting:
                    self._dispatch(message)  # what the held messages wait for
                elif message is not None and (passwords.waiting or pages.waiting):
                    self._stalled.append(message)  # a burst must not be released before its verdict
                elif message is not None:
                    self._dispatch(message)
                self._hide_password(passwords.overdue(time.perf_counter(), self._out.last_key_t))
                while self._stalled and not passwords.waiting and not pages.waiting:
                    self._dispatch(self._stalled.popleft())
                self._on_time_passed()
                idle = not self._stalled and not passwords.waiting and not pages.waiting
                if self._draining and idle and self._frames_in_flight == 0 and events.empty():
                    break
                if self._frames_in_flight == 0 and self._out.batch.due(
                    time.perf_counter_ns(), extra=1 if self._path else 0
                ):
                    self._flush()
            stop_ns = time.perf_counter_ns()
            self._close_path()
            for marker in self._spans.close_at_stop(stop_ns):
                self._out.emit(marker)
            self._out.end_burst()
            clock = self._clock
            self._out.emit(Marker(t=clock.t(stop_ns), wall=clock.wall(stop_ns), kind=STOP_MARKER_KIND))
            self._flush()
        except SinkError as failure:
            self._fail(f"cannot write to the spool: {failure}")
        except Exception as failure:
            log.exception("recorder processing failed")
            self._fail(f"recorder processing failed: {failure!r}")
