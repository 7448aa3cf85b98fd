"""Raw recorder events → the steps a computer-use agent would take (model.Action).

A chain of small pure functions over lists, each data in, data out:

1. ``single_steps``: one provisional Action per click, drag, scroll tick and key press, plus barriers
   where coalescing must stop (markers, focus changes). A "redacted" marker is not a barrier: it types
   its ``<KIND>`` placeholder, so a burst reads 'card <CREDIT_CARD> ok' where the device dropped keys.
2. ``coalesce_typing``, ``group_multi_clicks``, ``coalesce_scrolls``: merge runs of neighbouring steps.
3. ``attach_paths``, ``attach_context``, ``attach_elements``: hand cursor movement, window, frame and the
   page element it landed on (browser extension reports) to each action.

Nothing is invented from movement alone: a MovePath only ever becomes part of another action.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import msgspec

from demotrace.model import (
    MODIFIERS,
    Action,
    ActionKind,
    Button,
    ButtonName,
    Element,
    Event,
    FrameTaken,
    Key,
    Marker,
    MovePath,
    Scroll,
    SessionHeader,
    Window,
)
from demotrace.protocol import REDACTED_MARKER_KIND

DRAG_THRESHOLD_PX = 5
SCROLL_GAP_S = 0.6
SCROLL_RADIUS_PX = 30
TYPE_BURST_GAP_S = 2.0
# A page reports what a click hit a few ms after the press (the recorder waits up to 0.3 s for it).
CLICK_REPORT_S = 1.0
CLICK_REPORT_PX = 3
_POINTER_KINDS = frozenset({"click", "double_click", "triple_click", "right_click", "middle_click", "drag"})
REDACTED_PLACEHOLDER = "<REDACTED>"
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")

_CLICK_KIND_OF_BUTTON: dict[ButtonName, ActionKind] = {
    "left": "click",
    "right": "right_click",
    "middle": "middle_click",
}

# pynput ("ctrl_l"), pyautogui ("ctrlleft") and X ("control") spellings of the four modifiers.
_MODIFIER_BASES = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "shift": "shift",
    "alt": "alt",
    "option": "alt",
    "super": "super",
    "win": "super",
    "cmd": "super",
    "command": "super",
    "meta": "super",
}
_MODIFIER_SUFFIXES = ("_l", "_r", "left", "right")
# Keys that only change what the next key types (AltGr, dead accents: the next key carries the composed
# character): on their own they do nothing an agent would repeat, and must not break a typing burst.
_SILENT_KEYS = frozenset({"alt_gr", "altgr", "iso_level3_shift", "mode_switch"})
_SILENT_PREFIXES = ("dead_",)


class _Point(NamedTuple):
    """A pointer position at an absolute recorder time."""

    t: float
    x: int
    y: int


@dataclass(frozen=True)
class _Interruption:
    """A marker: input around it may be missing, so no run of steps may be merged across it."""

    t: float


@dataclass(frozen=True)
class _FocusChange:
    """Another window got focus: typed text after it goes elsewhere, so it ends a typing burst."""

    t: float


Step = Action | _Interruption | _FocusChange
_Timed = TypeVar("_Timed", Window, FrameTaken, Element)


def modifier_name(key: str) -> str | None:
    """The MODIFIERS name of a modifier key ("ctrl_l" → "ctrl"), or None for any other key."""
    name = key.lower()
    for suffix in _MODIFIER_SUFFIXES:
        if name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
            break
    return _MODIFIER_BASES.get(name)


def _normalised_modifiers(names: Sequence[str]) -> frozenset[str]:
    return frozenset(m for m in (modifier_name(n) for n in names) if m is not None)


def _in_modifier_order(modifiers: frozenset[str]) -> list[str]:
    return [m for m in MODIFIERS if m in modifiers]


def _is_printable(char: str | None) -> bool:
    return char is not None and char != "" and char.isprintable()


def _distance(ax: int, ay: int, bx: int, by: int) -> float:
    return math.hypot(ax - bx, ay - by)


def absolute_points(events: Sequence[Event]) -> list[_Point]:
    """Every MovePath point on the recorder clock, in time order."""
    points = [
        _Point(move.t + offset, x, y)
        for move in events
        if isinstance(move, MovePath)
        for x, y, offset in move.points
    ]
    points.sort(key=lambda point: point.t)
    return points


def _points_between(points: Sequence[_Point], start: float, end: float) -> Sequence[_Point]:
    times = [point.t for point in points]
    return points[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]


def _pointer_moved(down: Button, up: Button, points: Sequence[_Point]) -> bool:
    """Did the pointer wander more than the drag threshold from the press point while held?"""
    positions = [(p.x, p.y) for p in _points_between(points, down.t, up.t)] + [(up.x, up.y)]
    return any(_distance(x, y, down.x, down.y) > DRAG_THRESHOLD_PX for x, y in positions)


def _button_step(down: Button, up: Button, held: frozenset[str], points: Sequence[_Point]) -> Action:
    # Modifiers held during a click (shift-click, ctrl-click) change its meaning; they ride in ``keys``.
    keys = _in_modifier_order(held) or None
    if _pointer_moved(down, up, points):
        return Action(
            kind="drag", t=down.t, t_end=up.t, wall=down.wall,
            x=down.x, y=down.y, end_x=up.x, end_y=up.y, keys=keys,
        )  # fmt: skip
    kind = _CLICK_KIND_OF_BUTTON[down.button]
    return Action(kind=kind, t=down.t, t_end=up.t, wall=down.wall, x=down.x, y=down.y, keys=keys)


def _key_step(key: Key) -> Action | None:
    """A single key press as a one-key action; None for modifier keys, which only qualify others."""
    name = key.key.lower()
    if modifier_name(name) is not None or name in _SILENT_KEYS or name.startswith(_SILENT_PREFIXES):
        return None
    modifiers = _normalised_modifiers(key.modifiers)
    if _is_printable(key.char) and modifiers <= {"shift"}:
        return Action(kind="type", t=key.t, t_end=key.t, wall=key.wall, text=key.char)
    if not modifiers:
        return Action(kind="press", t=key.t, t_end=key.t, wall=key.wall, keys=[name])
    return Action(
        kind="hotkey", t=key.t, t_end=key.t, wall=key.wall, keys=[*_in_modifier_order(modifiers), name]
    )


def _held_after(key: Key) -> frozenset[str]:
    """Modifiers held once ``key`` is applied; trusts the recorder's list over our own bookkeeping,
    so a release lost in an uncaptured span cannot leave a modifier stuck forever."""
    held = set(_normalised_modifiers(key.modifiers))
    own = modifier_name(key.key)
    if own is not None:
        if key.down:
            held.add(own)
        else:
            held.discard(own)
    return frozenset(held)


def _focus_of(window: Window) -> tuple[int, str]:
    # Without a window id (0) the app is the best identity we have; titles change while typing.
    return (window.window_id, "" if window.window_id else window.app)


def single_steps(events: Sequence[Event], points: Sequence[_Point]) -> list[Step]:
    """One provisional action per click, drag, scroll tick and key press, with barriers, in time order."""
    steps: list[Step] = []
    pressed: dict[ButtonName, tuple[Button, frozenset[str]]] = {}
    held: frozenset[str] = frozenset()
    focus: tuple[int, str] | None = None
    for event in events:
        if isinstance(event, Key):
            if event.down:
                step = _key_step(event)
                if step is not None:
                    steps.append(step)
            held = _held_after(event)
        elif isinstance(event, Button):
            if event.down:
                pressed[event.button] = (event, held)
            elif event.button in pressed:
                down, held_at_down = pressed.pop(event.button)
                steps.append(_button_step(down, event, held_at_down, points))
        elif isinstance(event, Scroll):
            steps.append(
                Action(kind="scroll", t=event.t, t_end=event.t, wall=event.wall,
                       x=event.x, y=event.y, dx=event.dx, dy=event.dy)
            )  # fmt: skip
        elif isinstance(event, Marker) and event.kind == REDACTED_MARKER_KIND:
            # Typed text the device redacted: its placeholder stands where the text was typed, inside
            # the burst, as the agent would type it; the input stream around it has no hole.
            text = event.text if _PLACEHOLDER.fullmatch(event.text) else REDACTED_PLACEHOLDER
            steps.append(Action(kind="type", t=event.t, t_end=event.t, wall=event.wall, text=text))
        elif isinstance(event, Marker):
            steps.append(_Interruption(event.t))
            held = frozenset()
            pressed.clear()
        elif isinstance(event, Window):
            if focus is not None and _focus_of(event) != focus:
                steps.append(_FocusChange(event.t))
            focus = _focus_of(event)
    # Button steps are emitted at release but belong at their press; sort is stable for equal times.
    steps.sort(key=lambda step: step.t)
    return steps


def _is_backspace(step: Action) -> bool:
    return step.kind == "press" and step.keys == ["backspace"]


def coalesce_typing(steps: Sequence[Step], gap_s: float = TYPE_BURST_GAP_S) -> list[Step]:
    """Merge bursts of typed characters into one ``type``; backspaces inside a burst edit its text.

    Any other step, a focus change or a pause longer than ``gap_s`` ends the burst. A burst whose text
    was deleted entirely did nothing and is dropped. Focus changes are consumed here.
    """
    out: list[Step] = []
    burst: Action | None = None
    last_key_t = 0.0

    def close_burst() -> None:
        nonlocal burst
        if burst is not None and burst.text:
            out.append(burst)
        burst = None

    for step in steps:
        if burst is not None and isinstance(step, Action) and step.t - last_key_t < gap_s:
            text = burst.text or ""
            if step.kind == "type":
                burst = msgspec.structs.replace(burst, text=text + (step.text or ""), t_end=step.t_end)
                last_key_t = step.t
                continue
            if _is_backspace(step) and text:
                burst = msgspec.structs.replace(burst, text=text[:-1], t_end=step.t_end)
                last_key_t = step.t
                continue
        close_burst()
        if isinstance(step, Action) and step.kind == "type":
            burst = step
            last_key_t = step.t
        elif not isinstance(step, _FocusChange):
            out.append(step)
    close_burst()
    return out


def _continues_multi_click(run: Sequence[Action], step: Step, interval_s: float, distance_px: int) -> bool:
    if not isinstance(step, Action) or step.kind != "click" or step.keys != run[0].keys:
        return False
    first = run[0]
    assert step.x is not None and step.y is not None and first.x is not None and first.y is not None
    # Toolkits (GTK, Qt) test the multi-click distance per axis, not as a radius.
    near = max(abs(step.x - first.x), abs(step.y - first.y)) <= distance_px
    return near and step.t - run[-1].t <= interval_s


def _multi_click(run: Sequence[Action]) -> Action:
    if len(run) == 1:
        return run[0]
    kind = "double_click" if len(run) == 2 else "triple_click"
    return msgspec.structs.replace(run[0], kind=kind, t_end=run[-1].t_end)


def group_multi_clicks(steps: Sequence[Step], interval_ms: int, distance_px: int) -> list[Step]:
    """Consecutive left clicks, each within ``interval_ms`` of the previous press and ``distance_px`` of
    the first, become one double_click (2) or triple_click (3 or more) at the first click's position."""
    out: list[Step] = []
    run: list[Action] = []
    for step in steps:
        if run and _continues_multi_click(run, step, interval_ms / 1000.0, distance_px):
            assert isinstance(step, Action)
            run.append(step)
            continue
        if run:
            out.append(_multi_click(run))
            run = []
        if isinstance(step, Action) and step.kind == "click":
            run = [step]
        else:
            out.append(step)
    if run:
        out.append(_multi_click(run))
    return out


def _reverses(run: Sequence[Action], step: Action) -> bool:
    """Does ``step`` scroll against the run on either axis (up after down, left after right)?

    The ticks of a run never oppose each other, so on each axis its sum has the sign of every tick.
    """
    run_dx = sum(tick.dx for tick in run)
    run_dy = sum(tick.dy for tick in run)
    return run_dx * step.dx < 0 or run_dy * step.dy < 0


def _continues_scroll(run: Sequence[Action], step: Step) -> bool:
    if not isinstance(step, Action) or step.kind != "scroll" or _reverses(run, step):
        return False
    first = run[0]
    assert step.x is not None and step.y is not None and first.x is not None and first.y is not None
    near = _distance(step.x, step.y, first.x, first.y) <= SCROLL_RADIUS_PX
    return near and step.t - run[-1].t < SCROLL_GAP_S


def _summed_scroll(run: Sequence[Action]) -> Action | None:
    dx = sum(step.dx for step in run)
    dy = sum(step.dy for step in run)
    if dx == 0 and dy == 0:
        return None  # ticks that scroll neither axis: nothing an agent could repeat
    return msgspec.structs.replace(run[0], dx=dx, dy=dy, t_end=run[-1].t_end)


def coalesce_scrolls(steps: Sequence[Step]) -> list[Step]:
    """Neighbouring scroll ticks (< 0.6 s apart, within 30 px of the first) in one direction become one
    scroll; vertical and horizontal ticks add up on their own axes.

    A tick against the run (up after down, left after right) starts a new scroll: a person who scrolls
    past and comes back did two things, each from its own screen (the latest frame before it), and
    summing them would keep only the difference (8 down, 3 up: 5 down), or nothing at all.
    """
    out: list[Step] = []
    run: list[Action] = []

    def close_run() -> None:
        summed = _summed_scroll(run) if run else None
        if summed is not None:
            out.append(summed)
        run.clear()

    for step in steps:
        if run and _continues_scroll(run, step):
            assert isinstance(step, Action)
            run.append(step)
            continue
        close_run()
        if isinstance(step, Action) and step.kind == "scroll":
            run.append(step)
        else:
            out.append(step)
    close_run()
    return out


def attach_paths(actions: Sequence[Action], points: Sequence[_Point]) -> list[Action]:
    """Give each action the pointer points recorded since the previous action ended, up to its own end,
    as (x, y, seconds relative to the action's t). A drag's path ends at its release point."""
    result: list[Action] = []
    next_point = 0
    for action in actions:
        path: list[tuple[int, int, float]] = []
        while next_point < len(points) and points[next_point].t <= action.t_end:
            point = points[next_point]
            path.append((point.x, point.y, round(point.t - action.t, 4)))
            next_point += 1
        release = (action.end_x, action.end_y)
        if (
            action.kind == "drag"
            and action.end_x is not None
            and action.end_y is not None
            and (not path or path[-1][:2] != release)
        ):
            path.append((action.end_x, action.end_y, round(action.t_end - action.t, 4)))
        result.append(msgspec.structs.replace(action, path=path))
    return result


def _latest_at_or_before(items: Sequence[_Timed], times: Sequence[float], t: float) -> _Timed | None:
    index = bisect.bisect_right(times, t) - 1
    return items[index] if index >= 0 else None


def attach_context(actions: Sequence[Action], events: Sequence[Event]) -> list[Action]:
    """Give each action the latest window and the latest frame at or before its start."""
    windows = [event for event in events if isinstance(event, Window)]
    frames = [event for event in events if isinstance(event, FrameTaken)]
    window_times = [window.t for window in windows]
    frame_times = [frame.t for frame in frames]
    result = []
    for action in actions:
        window = _latest_at_or_before(windows, window_times, action.t)
        frame = _latest_at_or_before(frames, frame_times, action.t)
        frame_id = frame.frame_id if frame is not None else None
        result.append(msgspec.structs.replace(action, window=window, frame_id=frame_id))
    return result


def _click_report(action: Action, clicks: Sequence[Element], times: Sequence[float]) -> Element | None:
    start = bisect.bisect_left(times, action.t)
    for report in clicks[start:]:
        if report.t > action.t + CLICK_REPORT_S:
            break
        if report.x is None or report.y is None or action.x is None or action.y is None:
            continue
        if abs(report.x - action.x) <= CLICK_REPORT_PX and abs(report.y - action.y) <= CLICK_REPORT_PX:
            return report
    return None


def attach_elements(actions: Sequence[Action], events: Sequence[Event]) -> list[Action]:
    """Give a click the element its page reported at that point right after it, and typing the field
    that had focus (reported since its window last changed)."""
    elements = [event for event in events if isinstance(event, Element)]
    clicks = [element for element in elements if element.event == "click"]
    click_times = [click.t for click in clicks]
    fields = [element for element in elements if element.event == "focus"]
    field_times = [field.t for field in fields]
    result = []
    for action in actions:
        found: Element | None = None
        if action.kind in _POINTER_KINDS:
            found = _click_report(action, clicks, click_times)
        elif action.kind == "type":
            found = _latest_at_or_before(fields, field_times, action.t)
            if found is not None and action.window is not None and found.t < action.window.t:
                found = None  # focus was reported in a window left since
        result.append(action if found is None else msgspec.structs.replace(action, element=found.element))
    return result


def reduce_events(
    header: SessionHeader, events: list[Event], *, type_gap: float = TYPE_BURST_GAP_S
) -> list[Action]:
    """Reduce one session's raw events (sorted by t) to the actions a computer-use agent would take."""
    points = absolute_points(events)
    steps = single_steps(events, points)
    steps = coalesce_typing(steps, type_gap)
    steps = group_multi_clicks(steps, header.double_click_ms, header.double_click_px)
    steps = coalesce_scrolls(steps)
    actions = [step for step in steps if isinstance(step, Action)]
    return attach_elements(attach_context(attach_paths(actions, points), events), events)
