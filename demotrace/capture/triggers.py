"""When to grab the screen: a pure decision over input events.

A frame is grabbed at the *start* of each action, never on a timer: the first mouse-down of a click
(not the second down of a double click), the first key of a typing burst, the first tick of a scroll
burst (a tick against the burst's direction starts a new one: the dataset makes it a step of its own,
which needs its own screen), every hotkey, and once when recording starts. Grabbing is
``capture.grab``'s; encoding is ``frames.encoder``'s: PNG key frames and lossless-WebP tile deltas,
about 1.9 KB per action frame on the demo session instead of ~50 KB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from demotrace.model import Monitor

FrameTrigger = Literal["click", "key", "scroll", "hotkey", "start"]
InputKind = Literal["button_down", "button_up", "key_down", "modifier_down", "scroll"]

# A key or scroll after this much quiet starts a new frame burst (and so a new frame).
FRAME_BURST_GAP_SECONDS = 1.0


@dataclass(frozen=True)
class TriggerState:
    """What the trigger decision remembers between events."""

    last_action: Literal["none", "mouse", "key", "scroll"] = "none"
    last_key_t: float = -math.inf
    last_scroll_t: float = -math.inf
    burst_scroll_dx: int = 0  # the scroll burst's direction on each axis: its ticks' sum so far
    burst_scroll_dy: int = 0
    last_click_t: float = -math.inf
    last_click_x: int = 0
    last_click_y: int = 0
    last_click_button: str = ""


def frame_trigger(
    state: TriggerState,
    kind: InputKind,
    t: float,
    *,
    x: int = 0,
    y: int = 0,
    button: str = "",
    hotkey: bool = False,
    dx: int = 0,
    dy: int = 0,
    double_click_seconds: float = 0.4,
    double_click_px: int = 5,
) -> tuple[FrameTrigger | None, TriggerState]:
    """Decide whether an input event starts an action that deserves a frame; returns (trigger, new state).

    Modifier presses neither trigger nor count as typing: shift+H starts its burst at H, and ctrl+s
    grabs once, at s (as a hotkey). ``dx``/``dy`` are a scroll tick's steps.
    """
    if kind == "modifier_down":
        return None, state
    if kind == "button_down":
        repeat = (
            button == state.last_click_button
            and t - state.last_click_t <= double_click_seconds
            and abs(x - state.last_click_x) <= double_click_px
            and abs(y - state.last_click_y) <= double_click_px
        )
        new_state = replace(
            state,
            last_action="mouse",
            last_click_t=t,
            last_click_x=x,
            last_click_y=y,
            last_click_button=button,
        )
        return (None if repeat else "click"), new_state
    if kind == "button_up":
        return None, replace(state, last_action="mouse")
    if kind == "key_down":
        new_state = replace(state, last_action="key", last_key_t=t)
        if hotkey:
            return "hotkey", new_state
        starts_burst = state.last_action != "key" or t - state.last_key_t > FRAME_BURST_GAP_SECONDS
        return ("key" if starts_burst else None), new_state
    # scroll
    reverses = state.burst_scroll_dx * dx < 0 or state.burst_scroll_dy * dy < 0
    starts_burst = (
        state.last_action != "scroll" or t - state.last_scroll_t > FRAME_BURST_GAP_SECONDS or reverses
    )
    burst_dx = dx if starts_burst else state.burst_scroll_dx + dx
    burst_dy = dy if starts_burst else state.burst_scroll_dy + dy
    new_state = replace(
        state, last_action="scroll", last_scroll_t=t, burst_scroll_dx=burst_dx, burst_scroll_dy=burst_dy
    )
    return ("scroll" if starts_burst else None), new_state


def monitor_at(monitors: list[Monitor], x: int, y: int) -> Monitor:
    """The monitor containing the point; the first (primary) one if the point is on none of them."""
    for monitor in monitors:
        if (
            monitor.left <= x < monitor.left + monitor.width
            and monitor.top <= y < monitor.top + monitor.height
        ):
            return monitor
    return monitors[0]


class FrameRequests(Protocol):
    """The frame pipeline as the processor sees it: every accepted request comes back as one FrameDone."""

    def request(self, trigger: str, stamp_ns: int, x: int, y: int, window_id: int) -> bool: ...

    def finish(self) -> None:
        """Answer every request made so far, then end (blocks)."""
        ...
