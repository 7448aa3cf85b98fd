"""Human-paced input through XTEST, recording each injected step as the Action a reducer should produce.

The driver is the ground truth of the end-to-end tests: whatever it does, it appends to ``injected`` in
exactly the form ``dataset.reduce`` should recover from the recorder's raw events. Timing is seeded
(``random.Random(seed)``) so a session is reproducible, and paced like a person so that neighbouring
actions stay distinguishable: multi-clicks, scroll bursts and typing bursts are never merged by accident.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib.ext import xtest

from demotrace.model import MODIFIERS, Action, ActionKind, ButtonName

MOVE_STEPS_PER_SECOND = 60
DOUBLE_CLICK_INTERVAL_S = 0.12  # between the release of one click of a multi-click and the next press
SAME_SPOT_PX = 20
# Gaps that keep separate actions separate for the reducer (its multi-click interval is ~0.5 s, its
# scroll-burst gap 0.6 s and its typing-burst gap 2 s).
SAME_SPOT_CLICK_GAP_S = 0.65
SCROLL_BURST_GAP_S = 0.75
TYPE_BURST_GAP_S = 2.2
SCROLL_TICK_INTERVAL_S = 0.08

_BUTTON_NUMBERS: dict[ButtonName, int] = {"left": 1, "middle": 2, "right": 3}
_CLICK_KINDS: dict[ButtonName, ActionKind] = {
    "left": "click",
    "middle": "middle_click",
    "right": "right_click",
}
_CLICK_LIKE = frozenset({"click", "double_click", "triple_click", "right_click", "middle_click", "drag"})

# pyautogui key names → X keysym names. Single printable characters are handled separately.
_KEYSYM_NAMES = {
    "enter": "Return",
    "esc": "Escape",
    "backspace": "BackSpace",
    "tab": "Tab",
    "space": "space",
    "delete": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "pagedown": "Next",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "ctrl": "Control_L",
    "shift": "Shift_L",
    "alt": "Alt_L",
    "super": "Super_L",
    "capslock": "Caps_Lock",
    **{f"f{number}": f"F{number}" for number in range(1, 13)},
}
# Other spellings people (and pyautogui) use, mapped to the one name the ground truth carries.
_KEY_ALIASES = {
    "return": "enter",
    "escape": "esc",
    "control": "ctrl",
    "del": "delete",
    "win": "super",
    "cmd": "super",
    "pgup": "pageup",
    "pgdn": "pagedown",
}


class DriverError(RuntimeError):
    pass


def canonical_key(key: str) -> str:
    """The one pyautogui-style name the ground truth uses for ``key`` ("Escape" → "esc")."""
    if len(key) == 1:
        return key
    name = key.lower()
    return _KEY_ALIASES.get(name, name)


def apply_backspaces(text: str) -> str:
    """What a text field holds after typing ``text``, where "\\b" is a backspace."""
    result: list[str] = []
    for char in text:
        if char == "\b":
            if result:
                result.pop()
        else:
            result.append(char)
    return "".join(result)


def _ease_in_out(s: float) -> float:
    # Cubic ease: slow start, fast middle, slow arrival, as hands move.
    return 4 * s**3 if s < 0.5 else 1 - (-2 * s + 2) ** 3 / 2


def _bezier(points: Sequence[tuple[float, float]], s: float) -> tuple[float, float]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    a, b, c, d = (1 - s) ** 3, 3 * (1 - s) ** 2 * s, 3 * (1 - s) * s**2, s**3
    return a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3


class XDriver:
    """Injects input into an X display through XTEST; ``injected`` lists what it did, as Actions."""

    def __init__(self, display: str | None = None, *, seed: int = 0, gap_scale: float = 1.0) -> None:
        """``gap_scale`` shrinks the pauses between actions (a dense session for soak runs: below 1,
        neighbouring actions may no longer read as separate ones)."""
        self.display: Any = xdisplay.Display(display)
        if not self.display.has_extension("XTEST"):
            self.display.close()
            raise DriverError(f"X display {display!r} has no XTEST extension")
        self.root: Any = self.display.screen().root
        self.rng = random.Random(seed)
        self.gap_scale = gap_scale
        self.injected: list[Action] = []
        self._pending_path: list[tuple[int, int, float]] = []  # absolute times until an action claims it

    # ----- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self.display.close()

    def __enter__(self) -> XDriver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    # ----- low level ----------------------------------------------------------------------------

    def _send(self, event_type: int, detail: int = 0, x: int = 0, y: int = 0) -> None:
        xtest.fake_input(self.display, event_type, detail, x=x, y=y)
        # sync, not flush: returns once the server has processed the event, so input really arrived.
        self.display.sync()

    def _button(self, button: ButtonName, down: bool) -> None:
        self._send(X.ButtonPress if down else X.ButtonRelease, _BUTTON_NUMBERS[button])

    def _key(self, keycode: int, down: bool) -> None:
        self._send(X.KeyPress if down else X.KeyRelease, keycode)

    def _keycode_of_keysym(self, keysym: int, what: str) -> tuple[int, bool]:
        """The keycode for ``keysym`` and whether shift must be held to get it."""
        found = sorted((index, keycode) for keycode, index in self.display.keysym_to_keycodes(keysym))
        for index, keycode in found:
            if index in (0, 1):
                return keycode, index == 1
        raise DriverError(f"no key on the keyboard mapping types {what!r}")

    def _keycode_of_char(self, char: str) -> tuple[int, bool]:
        if char == "\b":
            return self._keycode_of_keysym(XK.string_to_keysym("BackSpace"), "backspace")
        if char == "\t":
            return self._keycode_of_keysym(XK.string_to_keysym("Tab"), "tab")
        if char == "\n":
            return self._keycode_of_keysym(XK.string_to_keysym("Return"), "enter")
        if not (" " <= char <= "~"):
            raise DriverError(f"only printable ASCII can be typed, not {char!r}")
        # For printable ASCII the X keysym is the character's code point.
        return self._keycode_of_keysym(ord(char), char)

    def _keycode_of_key(self, key: str) -> int:
        if len(key) == 1:
            keycode, _needs_shift = self._keycode_of_char(key)
            return keycode
        keysym_name = _KEYSYM_NAMES.get(key)
        if keysym_name is None:
            raise DriverError(f"unknown key name {key!r}")
        keycode, _needs_shift = self._keycode_of_keysym(XK.string_to_keysym(keysym_name), key)
        return keycode

    def _sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    # ----- pacing -------------------------------------------------------------------------------

    def _earliest_start(self, kind: ActionKind, x: int | None = None, y: int | None = None) -> float:
        """When the next action may begin: a human pause after the last, long enough to keep them apart."""
        if not self.injected:
            return time.monotonic()
        last = self.injected[-1]
        gap = self.rng.uniform(0.3, 1.2)
        # A drag ends where it was released; any click there soon after could read as a multi-click.
        last_x, last_y = (last.end_x, last.end_y) if last.kind == "drag" else (last.x, last.y)
        if kind in _CLICK_LIKE and last.kind in _CLICK_LIKE and None not in (x, y, last_x, last_y):
            assert x is not None and y is not None and last_x is not None and last_y is not None
            if max(abs(x - last_x), abs(y - last_y)) <= SAME_SPOT_PX:
                gap = max(gap, SAME_SPOT_CLICK_GAP_S + self.rng.uniform(0, 0.3))
        if kind == last.kind == "scroll":
            gap = max(gap, SCROLL_BURST_GAP_S + self.rng.uniform(0, 0.3))
        if kind == last.kind == "type":
            gap = max(gap, TYPE_BURST_GAP_S + self.rng.uniform(0, 0.3))
        return last.t_end + gap * self.gap_scale

    def _approach(self, kind: ActionKind, x: int, y: int) -> None:
        """Pause, move the pointer to (x, y), and wait out the rest of the pause before pressing."""
        start_at = self._earliest_start(kind, x, y)
        start_x, start_y = self.position()
        distance = math.hypot(x - start_x, y - start_y)
        duration = self._move_duration(distance)
        # Think first, then move: the press lands when the pause is over.
        self._sleep_until(start_at - duration)
        self._move(x, y, duration)
        self._sleep_until(start_at)

    def _move_duration(self, distance: float) -> float:
        if distance < 2:
            return 0.0
        return min(0.7, 0.15 + distance / 2500) * self.rng.uniform(0.85, 1.2)

    def _move(self, x: int, y: int, duration: float) -> None:
        start_x, start_y = self.position()
        if (start_x, start_y) == (x, y):
            return
        steps = max(2, round(duration * MOVE_STEPS_PER_SECOND))
        # Control points pushed sideways from the straight line give the path a hand-like curve.
        dx, dy = x - start_x, y - start_y
        bend = self.rng.uniform(-0.25, 0.25)
        normal = (-dy * bend, dx * bend)
        controls = [
            (float(start_x), float(start_y)),
            (start_x + dx * 0.3 + normal[0], start_y + dy * 0.3 + normal[1]),
            (start_x + dx * 0.7 + normal[0] * 0.6, start_y + dy * 0.7 + normal[1] * 0.6),
            (float(x), float(y)),
        ]
        began = time.monotonic()
        previous = (start_x, start_y)
        for step in range(1, steps + 1):
            s = step / steps
            px, py = _bezier(controls, _ease_in_out(s))
            point = (x, y) if step == steps else (round(px), round(py))
            self._sleep_until(began + duration * s)
            if point != previous:
                self._send(X.MotionNotify, x=point[0], y=point[1])
                self._pending_path.append((point[0], point[1], time.monotonic()))
                previous = point

    def _take_path(self, t: float) -> list[tuple[int, int, float]]:
        path = [(px, py, round(pt - t, 4)) for px, py, pt in self._pending_path]
        self._pending_path = []
        return path

    def _record(self, action: Action) -> Action:
        self.injected.append(action)
        return action

    # ----- pointer ------------------------------------------------------------------------------

    def position(self) -> tuple[int, int]:
        pointer = self.root.query_pointer()
        return int(pointer.root_x), int(pointer.root_y)

    def move_to(self, x: int, y: int) -> None:
        """Move along a curved, eased path (a few hundred ms); not an action on its own."""
        start_x, start_y = self.position()
        self._move(x, y, self._move_duration(math.hypot(x - start_x, y - start_y)))

    def _press_release(self, button: ButtonName) -> None:
        self._button(button, True)
        time.sleep(self.rng.uniform(0.04, 0.1))
        self._button(button, False)

    def _clicks(self, kind: ActionKind, x: int, y: int, button: ButtonName, count: int) -> Action:
        self._approach(kind, x, y)
        t, wall = time.monotonic(), time.time()
        for index in range(count):
            if index:
                time.sleep(DOUBLE_CLICK_INTERVAL_S * self.rng.uniform(0.8, 1.2))
            self._press_release(button)
        return self._record(
            Action(kind=kind, t=t, t_end=time.monotonic(), wall=wall, x=x, y=y, path=self._take_path(t))
        )

    def click(self, x: int, y: int, button: ButtonName = "left") -> Action:
        return self._clicks(_CLICK_KINDS[button], x, y, button, 1)

    def double_click(self, x: int, y: int) -> Action:
        return self._clicks("double_click", x, y, "left", 2)

    def triple_click(self, x: int, y: int) -> Action:
        return self._clicks("triple_click", x, y, "left", 3)

    def right_click(self, x: int, y: int) -> Action:
        return self.click(x, y, "right")

    def middle_click(self, x: int, y: int) -> Action:
        return self.click(x, y, "middle")

    def drag(self, x1: int, y1: int, x2: int, y2: int) -> Action:
        """Press at (x1, y1), move in steps to (x2, y2), release there."""
        self._approach("drag", x1, y1)
        t, wall = time.monotonic(), time.time()
        self._button("left", True)
        time.sleep(self.rng.uniform(0.08, 0.15))
        distance = math.hypot(x2 - x1, y2 - y1)
        self._move(x2, y2, max(0.3, self._move_duration(distance)))
        time.sleep(self.rng.uniform(0.08, 0.15))  # settle before letting go, as people do
        self._button("left", False)
        return self._record(
            Action(kind="drag", t=t, t_end=time.monotonic(), wall=wall, x=x1, y=y1, end_x=x2, end_y=y2,
                   path=self._take_path(t))
        )  # fmt: skip

    def scroll(self, x: int, y: int, dy: int, dx: int = 0) -> Action:
        """Scroll at (x, y): one wheel tick per unit, dy > 0 up (button 4), dx > 0 right (button 7)."""
        if dx == 0 and dy == 0:
            raise ValueError("a scroll needs dx or dy")
        self._approach("scroll", x, y)
        t, wall = time.monotonic(), time.time()
        ticks = [4 if dy > 0 else 5] * abs(dy) + [7 if dx > 0 else 6] * abs(dx)
        for index, button in enumerate(ticks):
            if index:
                time.sleep(SCROLL_TICK_INTERVAL_S * self.rng.uniform(0.85, 1.15))
            self._send(X.ButtonPress, button)
            self._send(X.ButtonRelease, button)
        return self._record(
            Action(kind="scroll", t=t, t_end=time.monotonic(), wall=wall, x=x, y=y, dx=dx, dy=dy,
                   path=self._take_path(t))
        )  # fmt: skip

    # ----- keyboard -----------------------------------------------------------------------------

    def type_text(self, text: str) -> Action:
        """Type printable ASCII, 50–150 ms a key; "\\b" is a backspace, applied in the recorded text."""
        keys = [self._keycode_of_char(char) for char in text]  # fails before anything is typed
        if not apply_backspaces(text):
            raise ValueError("typing must leave some text behind")
        shift = self._keycode_of_key("shift")
        start_at = self._earliest_start("type")
        self._sleep_until(start_at)
        t, wall = time.monotonic(), time.time()
        for index, (keycode, needs_shift) in enumerate(keys):
            if index:
                time.sleep(self.rng.uniform(0.05, 0.15))
            if needs_shift:
                self._key(shift, True)
                time.sleep(self.rng.uniform(0.02, 0.04))
            self._key(keycode, True)
            time.sleep(self.rng.uniform(0.02, 0.05))
            self._key(keycode, False)
            if needs_shift:
                time.sleep(self.rng.uniform(0.01, 0.03))
                self._key(shift, False)
        return self._record(
            Action(kind="type", t=t, t_end=time.monotonic(), wall=wall, text=apply_backspaces(text),
                   path=self._take_path(t))
        )  # fmt: skip

    def press(self, key: str) -> Action:
        """Press and release one named key ("enter", "esc", "f5"...)."""
        return self._chord("press", [canonical_key(key)])

    def hotkey(self, *keys: str) -> Action:
        """Hold the modifiers, press the other keys, release in reverse ("ctrl", "s")."""
        names = [canonical_key(key) for key in keys]
        # Ground truth lists modifiers first, in the model's order, as the reducer does.
        ordered = [m for m in MODIFIERS if m in names] + [n for n in names if n not in MODIFIERS]
        return self._chord("hotkey", ordered)

    def _chord(self, kind: ActionKind, names: list[str]) -> Action:
        keycodes = [self._keycode_of_key(name) for name in names]
        self._sleep_until(self._earliest_start(kind))
        t, wall = time.monotonic(), time.time()
        for keycode in keycodes:
            self._key(keycode, True)
            time.sleep(self.rng.uniform(0.04, 0.09))
        for keycode in reversed(keycodes):
            self._key(keycode, False)
            time.sleep(self.rng.uniform(0.02, 0.05))
        return self._record(
            Action(kind=kind, t=t, t_end=time.monotonic(), wall=wall, keys=names, path=self._take_path(t))
        )
