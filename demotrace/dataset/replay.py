"""Replay trajectories: run each step's planned calls (replay_plan.py) on a display, at a human pace.

Parsing and planning are pure (no X, no pyautogui); :func:`replay` is the I/O edge. pyautogui connects
to ``$DISPLAY`` when it is imported and stays bound to that display for the life of the process, so it
is imported lazily, with ``DISPLAY`` set, and a process replays on one display only.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from demotrace.dataset.export.agentnet import ScreenSize, Trajectory
from demotrace.dataset.replay_plan import (
    Call,
    KeyCall,
    PlaceholderRule,
    PointerCall,
    ReplayError,
    ReplayStep,
    ScrollCall,
    WriteCall,
    plan_replay,
    redacted_steps,
    resolve_placeholders,
)


@dataclass(frozen=True)
class Pacing:
    """How fast replay goes. The pause after each step outlasts toolkits' double-click time (~0.5 s),
    so two separate clicks on one spot stay two clicks; it also lets the app react before the next."""

    step_pause_s: float = 0.7
    move_s: float = 0.3  # pointer travel to where a click, scroll or drag starts
    drag_s: float = 0.5  # travel with the button held
    key_interval_s: float = 0.04  # between typed characters
    multi_click_interval_s: float = 0.1  # between the clicks of a double or triple click

    def faster(self, speed: float) -> Pacing:
        """Every duration divided by ``speed`` (2.0: twice as fast)."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        return Pacing(
            step_pause_s=self.step_pause_s / speed,
            move_s=self.move_s / speed,
            drag_s=self.drag_s / speed,
            key_interval_s=self.key_interval_s / speed,
            multi_click_interval_s=self.multi_click_interval_s / speed,
        )


# ----- the display's side, still pure: pixels and the keys its keyboard can type ---------------------------


def to_pixels(x: float, y: float, screen: ScreenSize) -> tuple[int, int]:
    """Normalised (x, y) on ``screen``; 1.0 maps to the last pixel, not one past it."""
    return (
        min(screen.width - 1, max(0, round(x * screen.width))),
        min(screen.height - 1, max(0, round(y * screen.height))),
    )


def _pyautogui_key(key: str) -> str:
    # pyautogui lower-cases key names, not single characters ("A" types a capital).
    return key.lower() if len(key) > 1 else key


def keys_of(call: Call) -> list[str]:
    """The pyautogui key names a call presses (a typed text's characters included)."""
    if isinstance(call, KeyCall):
        return [_pyautogui_key(key) for key in call.keys]
    if isinstance(call, WriteCall):
        return list(call.text)
    return []


def untypeable(steps: Iterable[ReplayStep], keyboard: Mapping[str, object]) -> list[str]:
    """A problem per step whose keys ``keyboard`` (pyautogui name → keycode) cannot type.

    pyautogui silently skips such keys; a replay that drops keys would not be a replay.
    """
    problems = []
    for step in steps:
        missing = sorted({key for call in step.calls for key in keys_of(call) if not keyboard.get(key)})
        if missing:
            problems.append(f"{step.label}: cannot type {', '.join(map(repr, missing))} on this display")
    return problems


def keycode_at_level(levels: Iterable[tuple[int, int]], shifted: bool) -> int | None:
    """From (keycode, level) pairs of a keysym, a keycode typing it with shift held or not (level 1 or 0)."""
    wanted = 1 if shifted else 0
    return min((keycode for keycode, level in levels if level == wanted), default=None)


# ----- the I/O edge: pyautogui on a display -------------------------------------------------------------


def _skip_motionless_moves(gui: Any) -> None:
    """Make pyautogui's X11 pointer moves send nothing when the pointer is already there.

    pyautogui moves the pointer to the click point again before the press and before the release. X
    reports that motion even though the pointer did not move, and a toolkit reads motion with the
    button held as a drag: Tk's Text selects the line end on such a "click" past the text. A person's
    click, and the recording it came from, has no such motion.
    """
    platform = gui.platformModule
    move = platform._moveTo
    if getattr(move, "skips_motionless", False):
        return

    def move_if_elsewhere(x: int, y: int) -> None:
        if tuple(platform._position()) != (x, y):
            move(x, y)

    move_if_elsewhere.skips_motionless = True  # type: ignore[attr-defined]
    platform._moveTo = move_if_elsewhere


def _fit_keyboard_mapping(gui: Any) -> None:
    """Point pyautogui's printable characters at keys that type them at the shift level it assumes.

    pyautogui holds shift for a character it believes is shifted on a US keyboard ('<', '?') but uses
    the first key that carries the keysym; on X's default keymap '<' is first on the unshifted level of
    the extra ISO key, so shift+that key types '>'. Characters no key types at the assumed level map to
    None, which :func:`untypeable` then reports instead of letting the replay type something else.
    """
    x_display = gui.platformModule._display
    mapping = gui.platformModule.keyboardMapping
    for char in map(chr, range(0x21, 0x7F)):  # printable ASCII: the keysym is the code point
        levels = list(x_display.keysym_to_keycodes(ord(char)))
        mapping[char] = keycode_at_level(levels, shifted=bool(gui.isShiftCharacter(char)))


def load_pyautogui(display: str | None) -> Any:
    """pyautogui, bound to ``display`` (default ``$DISPLAY``); raises ReplayError if it cannot be."""
    target = display or os.environ.get("DISPLAY")
    if not target:
        raise ReplayError("no X display: set $DISPLAY or pass a display")
    if "pyautogui" not in sys.modules:
        # pyautogui (and mouseinfo, which it imports) open $DISPLAY at import time.
        os.environ["DISPLAY"] = target
    try:
        gui = importlib.import_module("pyautogui")
    except Exception as error:  # pyautogui raises bare Exceptions (Xlib errors) when X is unreachable
        raise ReplayError(f"cannot load pyautogui on display {target}: {error}") from error
    bound = str(gui.platformModule._display.get_display_name())
    if bound != target:
        raise ReplayError(
            f"pyautogui in this process is bound to display {bound}; replay on {target} in a new process"
        )
    return gui


def _run_call(gui: Any, call: Call, screen: ScreenSize, pacing: Pacing) -> None:
    # _pause=False everywhere: pyautogui's global PAUSE would add a second, unconfigured pacing.
    ease = gui.easeInOutQuad
    if isinstance(call, PointerCall):
        x, y = to_pixels(call.x, call.y, screen)
        if call.function == "dragTo":
            gui.dragTo(x, y, duration=pacing.drag_s, tween=ease, button=call.button, _pause=False)
            return
        gui.moveTo(x, y, duration=pacing.move_s, tween=ease, _pause=False)
        if call.function != "moveTo":
            gui.click(
                x, y, clicks=call.clicks, interval=pacing.multi_click_interval_s, button=call.button,
                _pause=False,
            )  # fmt: skip
    elif isinstance(call, ScrollCall):
        if call.x is not None and call.y is not None:
            x, y = to_pixels(call.x, call.y, screen)
            gui.moveTo(x, y, duration=pacing.move_s, tween=ease, _pause=False)
        scroll = gui.hscroll if call.horizontal else gui.scroll
        scroll(call.clicks, _pause=False)
    elif isinstance(call, WriteCall):
        gui.write(call.text, interval=pacing.key_interval_s, _pause=False)
    elif call.function == "press":
        gui.press(list(call.keys), presses=call.presses, interval=pacing.key_interval_s, _pause=False)
    elif call.function == "hotkey":
        gui.hotkey(*call.keys, interval=pacing.key_interval_s, _pause=False)
    elif call.function == "keyDown":
        gui.keyDown(call.keys[0], _pause=False)
    else:
        gui.keyUp(call.keys[0], _pause=False)


@dataclass(frozen=True)
class ReplayResult:
    steps: int
    calls: int
    screen: ScreenSize
    redacted_steps: list[str]  # labels of steps that typed a redaction placeholder
    skipped_steps: list[str]  # labels of steps left out for their placeholders (PlaceholderRule.skip)


def replay(
    trajectories: Sequence[Trajectory],
    *,
    display: str | None = None,
    pacing: Pacing | None = None,
    screen: ScreenSize | None = None,
    on_step: Callable[[int, int, ReplayStep], None] | None = None,
    placeholders: PlaceholderRule | None = None,
) -> ReplayResult:
    """Replay ``trajectories`` in order on ``display``, de-normalised to ``screen`` (default: its size).

    Everything is parsed and checked first; a ReplayError before any input means nothing was sent.
    ``on_step(position, total, step)`` is called before each step runs. ``placeholders``: values for
    redaction placeholders, or skip their steps, or refuse (see ``PlaceholderRule``); None types them as
    they are (what a fidelity measurement of the dataset itself wants).
    """
    steps = plan_replay(trajectories)
    skipped: list[str] = []
    if placeholders is not None:
        steps, skipped = resolve_placeholders(steps, placeholders)
    gui = load_pyautogui(display)
    _fit_keyboard_mapping(gui)
    _skip_motionless_moves(gui)
    problems = untypeable(steps, gui.platformModule.keyboardMapping)
    if problems:
        raise ReplayError("; ".join(problems))
    width, height = gui.size()
    target = screen or ScreenSize(width=int(width), height=int(height))
    pace = pacing or Pacing()
    calls = 0
    for position, step in enumerate(steps):
        if on_step is not None:
            on_step(position, len(steps), step)
        try:
            for call in step.calls:
                _run_call(gui, call, target, pace)
                calls += 1
        except gui.FailSafeException as error:
            raise ReplayError(
                f"stopped at {step.label}: the pointer reached a screen corner (pyautogui fail-safe)"
            ) from error
        # After the last step too: the app gets to react before anyone reads its state.
        time.sleep(pace.step_pause_s)
    return ReplayResult(
        steps=len(steps),
        calls=calls,
        screen=target,
        redacted_steps=[step.label for step in redacted_steps(steps)],
        skipped_steps=skipped,
    )
