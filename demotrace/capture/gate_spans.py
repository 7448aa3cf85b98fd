"""The policy gate as a pure state machine: not-captured spans, their markers, and clicks held across them.

Every event is decided against the current window and the gate's policy and state (``policy.decide``).
The gate's listener puts a wake-up on the event queue, so a change applies to the very next event; a
pause's end is a deadline of the queue wait, not a loop. While nothing may be captured (paused, exempt, a
denied or not-allowlisted window) no input, pointer path, frame or window event is written - not even the
window's name: the focus change into such a window is simply not reported. When capture resumes (or at
stop) one ``Marker(kind="not_captured", text=<reason>, duration=<seconds>)`` is written, stamped with the
*start* of the span; a change of reason inside a span closes it and opens the next. Task markers set
during a span are held and written after its marker, in order; while exempt they are dropped. With low
battery in ``input_only`` mode input is written but no frames, after a ``Marker(kind="input_only")``.

A press on a window that may not be captured is dropped with its release. While the focused window may
not be captured, a click on one that may is held: if that window takes focus next (the click that brings
the person back), the click is written after the span's marker; otherwise it is forgotten.

:class:`GateSpans` is fed facts (the window, the gate's policy and state, button events and what lies
under the pointer) with their stamps and the gate clock's reading; it returns the markers and events to
write, and says what else the change asks for (:class:`GateChange`). No X, no threads, no clock reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from demotrace.capture.browser_pages import BrowserPages
from demotrace.capture.messages import Clock
from demotrace.capture.platform import WindowInfo
from demotrace.model import Button, ButtonName, Marker
from demotrace.policy import (
    CAPTURE_ALL,
    CapturePolicy,
    Decision,
    DeviceState,
    WindowContext,
    decide,
    decision_expires,
)
from demotrace.protocol import INPUT_ONLY_MARKER_KIND, NOT_CAPTURED_MARKER_KIND
from demotrace.redact.text import redact_text

# Reasons that belong to the focused window (others - pause, exemption, battery - hold for every window).
WINDOW_REASONS = frozenset(
    {"denied app", "denied title", "denied url", "private window", "unknown page", "not allowlisted"}
)
# Button events of clicks held while the focused window may not be captured (a few clicks' worth).
MAX_HELD_CLICK_EVENTS = 8


def window_context(info: WindowInfo | None) -> WindowContext | None:
    """What the policy is told about a window."""
    if info is None:
        return None
    return WindowContext(app=info.app, instance=info.instance, process=info.process, title=info.title)


@dataclass(frozen=True)
class GateChange:
    """What a new decision asks for, in this order: write ``closed_span`` (the ended span's marker, then
    the task markers held during it); if ``span_started``, write what was captured before it (the pointer
    path, the typing burst) and nothing else; if ``resumed``, report the focused window again and write
    ``released_clicks``; write ``input_only_marker``; if ``screen_back``, the next action gets a fresh
    frame."""

    closed_span: list[Marker] = field(default_factory=list)
    span_started: bool = False
    resumed: bool = False
    released_clicks: list[Button] = field(default_factory=list)
    input_only_marker: Marker | None = None
    screen_back: bool = False


class GateSpans:
    """The decision in force at this point of the event queue, and the span it may be in."""

    def __init__(
        self,
        clock: Clock,
        policy: CapturePolicy,
        state: DeviceState,
        window: WindowInfo | None,
        pages: BrowserPages | None = None,
    ) -> None:
        self._clock = clock
        # What the browser extension says about browser windows (fed by the processor, in queue order).
        self.pages = pages if pages is not None else BrowserPages()
        # The policy and state in force at this point of the event queue (they travel with GateChanged).
        self.policy = policy
        self.state = state
        self.window = window
        self.decision = CAPTURE_ALL
        self.expires: float | None = None  # gate-clock time at which time alone may change the decision
        self._span_start_ns = 0  # start of the current not-captured span
        self._span_markers: list[Marker] = []  # task markers set during it, written after its marker
        self._dropped_buttons: set[ButtonName] = set()  # pressed and not written: drop their release
        self._held_buttons: set[ButtonName] = set()  # pressed in a held click, not released yet
        self._held_clicks: list[tuple[int, Button]] = []  # (window id clicked, event) during a span

    def _marker(self, ns: int, kind: str, text: str = "", duration: float = 0.0) -> Marker:
        clock = self._clock
        return Marker(t=clock.t(ns), wall=clock.wall(ns), kind=kind, text=text, duration=duration)

    # -- what changes the decision -------------------------------------------------------------

    def refresh(self, ns: int, now: float) -> GateChange | None:
        """Decide again (the window or the gate changed, or a pause ran out); a change counts from ``ns``."""
        decision = decide(self.policy, self.context(), self.state, now)
        self.expires = decision_expires(self.state, now)
        if decision == self.decision:
            return None
        previous, self.decision = self.decision, decision
        return self._change(previous, decision, ns)

    def context(self) -> WindowContext | None:
        """What the policy is told about the window in force."""
        return self.pages.context(self.window, self.policy, focused=True)

    def gate_changed(
        self, policy: CapturePolicy, state: DeviceState, ns: int, now: float
    ) -> GateChange | None:
        self.policy, self.state = policy, state
        return self.refresh(ns, now)

    def focus(self, window: WindowInfo | None, ns: int, now: float) -> GateChange | None:
        """The focused window changed; it is reported only if ``decision.input_allowed`` afterwards."""
        self.window = window
        return self.refresh(ns, now)

    def expired_at(self, ns: int, now: float, now_ns: int) -> int | None:
        """If a pause ran out (the gate clock reads ``now`` at perf_counter ``now_ns``), the stamp at which
        it ended, to refresh at: its own instant, even if noticed only now, and never before the span
        began or after ``ns``. None if the decision still holds."""
        expires = self.expires
        if expires is None or now < expires:
            return None
        ended_ns = now_ns - int((now - expires) * 1e9)
        return max(self._span_start_ns, min(ns, ended_ns))

    def _change(self, previous: Decision, decision: Decision, ns: int) -> GateChange:
        closed = self._close_span(previous.reason, ns) if previous.capture == "nothing" else []
        if decision.capture == "nothing":
            # What was captured before the span is complete: written; from here on nothing is kept.
            self._span_start_ns = ns
            self._held_clicks = []
            self._held_buttons.clear()
            return GateChange(closed, span_started=True)
        resumed = previous.capture == "nothing"
        return GateChange(
            closed,
            resumed=resumed,
            released_clicks=self._release_held_clicks() if resumed else [],
            input_only_marker=(
                self._marker(ns, INPUT_ONLY_MARKER_KIND, decision.reason)
                if decision.capture == "input_only" and previous.capture != "input_only"
                else None
            ),
            screen_back=decision.screen_allowed and not previous.screen_allowed,
        )

    def _close_span(self, reason: str, ns: int) -> list[Marker]:
        """The not-captured span ends at ``ns``: its one marker (stamped at its start), then the task
        markers set during it."""
        duration = max(0, ns - self._span_start_ns) / 1e9
        markers = [self._marker(self._span_start_ns, NOT_CAPTURED_MARKER_KIND, reason, duration)]
        markers += self._span_markers
        self._span_markers = []
        return markers

    def close_at_stop(self, ns: int) -> list[Marker]:
        """The recording stops at ``ns``: the markers of the span it is in, if any."""
        if self.decision.capture != "nothing":
            return []
        return self._close_span(self.decision.reason, ns)

    # -- what the decision lets through --------------------------------------------------------

    def task_marker(self, ns: int, kind: str, text: str) -> Marker | None:
        """The task marker to write now; None if it is held for after the span, or dropped (exempt)."""
        if self.decision.reason == "exempt":
            return None  # an exempt person's tasks are not recorded either
        # The text is typed by the person, so it gets the same scrub as any typed text.
        marker = self._marker(ns, kind, redact_text(text).text)
        if not self.decision.input_allowed:
            self._span_markers.append(marker)
            return None
        return marker

    def allows_input_to(
        self, target: WindowInfo | None, now: float, stack: Sequence[WindowInfo] = ()
    ) -> bool:
        """May input to ``target`` (the window under the pointer, one of the visible ``stack``) be
        captured?"""
        context = self.pages.context(target, self.policy, focused=False, stack=stack)
        return decide(self.policy, context, self.state, now).input_allowed

    def press_written(self, event: Button, target_allowed: bool, target_id: int) -> bool:
        """Is this press written now? ``target_allowed``: may the window it lands on (``target_id``) be
        captured. A press that is not written is dropped with its release, or held (see the module)."""
        if target_allowed and self.decision.input_allowed:
            return True
        if target_allowed and self.decision.reason in WINDOW_REASONS and target_id:
            self._held_buttons.add(event.button)
            self._held_clicks = [*self._held_clicks, (target_id, event)][-MAX_HELD_CLICK_EVENTS:]
        else:
            self._dropped_buttons.add(event.button)
        return False

    def release_written(self, event: Button) -> bool:
        """Is this release written now? It follows its press: dropped, held with it, or written."""
        if event.button in self._dropped_buttons:
            self._dropped_buttons.discard(event.button)
            return False
        if event.button in self._held_buttons:
            self._held_buttons.discard(event.button)
            self._held_clicks.append((self._held_clicks[-1][0], event))
            return False
        return self.decision.input_allowed

    def _release_held_clicks(self) -> list[Button]:
        """The clicks held during the span that ended, if they landed on the window now focused."""
        focused = self.window.window_id if self.window is not None else 0
        clicks = [event for target, event in self._held_clicks if target == focused]
        self._held_clicks = []
        self._held_buttons.clear()
        return clicks
