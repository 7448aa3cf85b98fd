"""Replay trajectories: run each step's pyautogui code on a display, safely and at a human pace.

A step's ``value.code`` is never executed. It is parsed with :mod:`ast`, and only the pyautogui calls
in :data:`ALLOWED_FUNCTIONS` pass, with literal arguments (numbers, strings, lists of them) bound to a
fixed signature; pointer coordinates must be normalised to [0, 1]. Anything else (another function,
a name, an attribute, an f-string, pixel coordinates) is a :class:`ReplayError` naming the episode and
step. The whole selection is parsed and checked before the first input is sent, so bad input replays
nothing at all rather than half a trajectory.

Parsing and planning are pure (no X, no pyautogui); :func:`replay` is the I/O edge. pyautogui connects
to ``$DISPLAY`` when it is imported and stays bound to that display for the life of the process, so it
is imported lazily, with ``DISPLAY`` set, and a process replays on one display only.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from demotrace.dataset.export.agentnet import ScreenSize, Trajectory
from demotrace.model import ButtonName

PointerFunction = Literal[
    "click", "doubleClick", "tripleClick", "rightClick", "middleClick", "moveTo", "dragTo"
]
KeyFunction = Literal["press", "hotkey", "keyDown", "keyUp"]

# A typed placeholder left by a redactor ("<EMAIL>"): replay types it literally.
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")

_BUTTONS: tuple[ButtonName, ...] = ("left", "right", "middle")
# Pointer functions other than click: the button and click count each one stands for.
_CLICKS_OF: dict[str, tuple[ButtonName, int]] = {
    "doubleClick": ("left", 2),
    "tripleClick": ("left", 3),
    "rightClick": ("right", 1),
    "middleClick": ("middle", 1),
}
_POINTER_FUNCTIONS: dict[str, PointerFunction] = {name: name for name in get_args(PointerFunction)}


def _signature(*names: str, **defaults: object) -> inspect.Signature:
    """A call signature: ``names`` required (positional or keyword), then ``defaults`` optional."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    required = [inspect.Parameter(name, kind) for name in names]
    optional = [inspect.Parameter(name, kind, default=value) for name, value in defaults.items()]
    return inspect.Signature([*required, *optional])


# The subset of pyautogui a trajectory may use. ``duration`` and ``interval`` are accepted for
# compatibility with other datasets' code and ignored: pacing belongs to the replayer (Pacing).
_SIGNATURES: dict[str, inspect.Signature] = {
    "click": _signature("x", "y", clicks=1, interval=0.0, button="left", duration=0.0),
    "doubleClick": _signature("x", "y", interval=0.0, duration=0.0),
    "tripleClick": _signature("x", "y", interval=0.0, duration=0.0),
    "rightClick": _signature("x", "y", interval=0.0, duration=0.0),
    "middleClick": _signature("x", "y", interval=0.0, duration=0.0),
    "moveTo": _signature("x", "y", duration=0.0),
    "dragTo": _signature("x", "y", duration=0.0, button="left"),
    "scroll": _signature("clicks", x=None, y=None),
    "hscroll": _signature("clicks", x=None, y=None),
    "write": _signature("message", interval=0.0),
    "press": _signature("keys", presses=1, interval=0.0),
    "keyDown": _signature("key"),
    "keyUp": _signature("key"),
    # hotkey takes its keys as arguments, as one list, or as keys=[...] (the OpenCUA spelling).
    "hotkey": inspect.Signature(
        [
            inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
            inspect.Parameter("keys", inspect.Parameter.KEYWORD_ONLY, default=None),
            inspect.Parameter("interval", inspect.Parameter.KEYWORD_ONLY, default=0.0),
        ]
    ),
}
ALLOWED_FUNCTIONS = tuple(_SIGNATURES)


class ReplayError(ValueError):
    """A trajectory that cannot be replayed as written; the message names the episode and step."""


# ----- what a step does, coordinates still normalised ------------------------------------------------


@dataclass(frozen=True)
class PointerCall:
    function: PointerFunction
    x: float  # [0, 1] of the screen width
    y: float
    button: ButtonName = "left"
    clicks: int = 1


@dataclass(frozen=True)
class ScrollCall:
    clicks: int  # > 0 up (or right, when horizontal)
    horizontal: bool
    x: float | None = None  # None: where the pointer is
    y: float | None = None


@dataclass(frozen=True)
class WriteCall:
    text: str


@dataclass(frozen=True)
class KeyCall:
    function: KeyFunction
    keys: tuple[str, ...]
    presses: int = 1


Call = PointerCall | ScrollCall | WriteCall | KeyCall


@dataclass(frozen=True)
class ReplayStep:
    episode: str  # the trajectory's task_id
    index: int  # the step's index in its trajectory
    code: str
    calls: tuple[Call, ...]

    @property
    def label(self) -> str:
        return f"episode {self.episode} step {self.index}"


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


# ----- parsing (pure) ----------------------------------------------------------------------------------


def _literal(node: ast.expr, where: str) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ReplayError(f"{where}: only literal arguments are allowed, not {ast.unparse(node)!r}") from None


def _number(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReplayError(f"{where}: {name} must be a number, not {value!r}")
    return float(value)


def _coordinate(value: object, name: str, where: str) -> float:
    number = _number(value, name, where)
    if not 0.0 <= number <= 1.0:
        raise ReplayError(f"{where}: {name}={value!r} is not normalised to [0, 1] (pixel coordinates?)")
    return number


def _integer(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReplayError(f"{where}: {name} must be an integer, not {value!r}")
    return value


def _text(value: object, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise ReplayError(f"{where}: {name} must be a string, not {value!r}")
    return value


def _key_names(value: object, name: str, where: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise ReplayError(f"{where}: {name} must be a key name or a non-empty list of them, not {value!r}")
    keys = tuple(_text(key, name, where) for key in names)
    if any(key == "" for key in keys):
        raise ReplayError(f"{where}: {name} holds an empty key name")
    return keys


def _button(value: object, where: str) -> ButtonName:
    for button in _BUTTONS:
        if value == button:
            return button
    raise ReplayError(f"{where}: button must be one of {', '.join(_BUTTONS)}, not {value!r}")


def _positive(value: int, name: str, where: str) -> int:
    if value < 1:
        raise ReplayError(f"{where}: {name} must be at least 1, not {value}")
    return value


def _ignored_pacing(arguments: Mapping[str, object], where: str) -> None:
    for name in ("duration", "interval"):
        if name in arguments:
            _number(arguments[name], name, where)


def _pointer_call(function: PointerFunction, arguments: Mapping[str, object], where: str) -> PointerCall:
    x = _coordinate(arguments["x"], "x", where)
    y = _coordinate(arguments["y"], "y", where)
    if function in _CLICKS_OF:
        button, clicks = _CLICKS_OF[function]
        return PointerCall(function, x, y, button, clicks)
    button = _button(arguments.get("button", "left"), where)
    clicks = _positive(_integer(arguments.get("clicks", 1), "clicks", where), "clicks", where)
    return PointerCall(function, x, y, button, clicks)


def _scroll_call(horizontal: bool, arguments: Mapping[str, object], where: str) -> ScrollCall:
    clicks = _integer(arguments["clicks"], "clicks", where)
    raw_x, raw_y = arguments["x"], arguments["y"]
    if raw_x is None or raw_y is None:
        if raw_x is not None or raw_y is not None:
            raise ReplayError(f"{where}: give both x and y, or neither")
        return ScrollCall(clicks, horizontal)
    return ScrollCall(clicks, horizontal, _coordinate(raw_x, "x", where), _coordinate(raw_y, "y", where))


def _hotkey_call(arguments: Mapping[str, object], where: str) -> KeyCall:
    positional = arguments["args"]
    assert isinstance(positional, tuple)
    keyword = arguments["keys"]
    if positional and keyword is not None:
        raise ReplayError(f"{where}: give hotkey keys as arguments or as keys=[...], not both")
    if keyword is not None:
        return KeyCall("hotkey", _key_names(keyword, "keys", where))
    if len(positional) == 1 and isinstance(positional[0], list | tuple):
        return KeyCall("hotkey", _key_names(positional[0], "keys", where))
    return KeyCall("hotkey", _key_names(list(positional), "keys", where))


def _build_call(function: str, arguments: Mapping[str, object], where: str) -> Call:
    """The typed call for bound, literal ``arguments`` (defaults applied), with every value checked."""
    _ignored_pacing(arguments, where)
    pointer_function = _POINTER_FUNCTIONS.get(function)
    if pointer_function is not None:
        return _pointer_call(pointer_function, arguments, where)
    if function in ("scroll", "hscroll"):
        return _scroll_call(function == "hscroll", arguments, where)
    if function == "write":
        return WriteCall(_text(arguments["message"], "message", where))
    if function == "press":
        presses = _positive(_integer(arguments["presses"], "presses", where), "presses", where)
        return KeyCall("press", _key_names(arguments["keys"], "keys", where), presses)
    if function == "keyDown":
        return KeyCall("keyDown", (_text(arguments["key"], "key", where),))
    if function == "keyUp":
        return KeyCall("keyUp", (_text(arguments["key"], "key", where),))
    return _hotkey_call(arguments, where)


def _parse_statement(statement: ast.stmt, where: str) -> Call | None:
    """One statement: ``import pyautogui`` (harmless, None) or an allowed ``pyautogui.<f>(literals)``."""
    if isinstance(statement, ast.Import) and [(a.name, a.asname) for a in statement.names] == [
        ("pyautogui", None)
    ]:
        return None
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        raise ReplayError(f"{where}: only pyautogui calls are allowed, not {ast.unparse(statement)!r}")
    call = statement.value
    target = call.func
    if not (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "pyautogui"
    ):
        raise ReplayError(f"{where}: only pyautogui calls are allowed, not {ast.unparse(target)!r}")
    function = target.attr
    signature = _SIGNATURES.get(function)
    if signature is None:
        raise ReplayError(
            f"{where}: pyautogui.{function} is not allowed (allowed: {', '.join(ALLOWED_FUNCTIONS)})"
        )
    if any(isinstance(argument, ast.Starred) for argument in call.args) or any(
        keyword.arg is None for keyword in call.keywords
    ):
        raise ReplayError(f"{where}: *args and **kwargs are not allowed in {ast.unparse(call)!r}")
    args = [_literal(argument, where) for argument in call.args]
    kwargs = {str(keyword.arg): _literal(keyword.value, where) for keyword in call.keywords}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise ReplayError(f"{where}: pyautogui.{function}: {error}") from None
    bound.apply_defaults()
    return _build_call(function, bound.arguments, where)


def parse_code(code: str, where: str) -> tuple[Call, ...]:
    """The calls of one step's code, in order; ``where`` names the step in errors."""
    try:
        module = ast.parse(code, mode="exec")
    except SyntaxError as error:
        raise ReplayError(f"{where}: not valid Python: {error.msg} (line {error.lineno})") from None
    calls = [_parse_statement(statement, where) for statement in module.body]
    parsed = tuple(call for call in calls if call is not None)
    if not parsed:
        raise ReplayError(f"{where}: the step has no pyautogui call")
    return parsed


def plan_replay(trajectories: Iterable[Trajectory]) -> list[ReplayStep]:
    """Every step of ``trajectories``, parsed and checked, in order (raises on the first bad one)."""
    steps = []
    for trajectory in trajectories:
        for step in trajectory.traj:
            code = step.value.code
            where = f"episode {trajectory.task_id} step {step.index}"
            steps.append(ReplayStep(trajectory.task_id, step.index, code, parse_code(code, where)))
    return steps


def select_trajectories(trajectories: Sequence[Trajectory], episode: str | None) -> list[Trajectory]:
    """All trajectories (file order), or the one whose task_id is ``episode``."""
    if episode is None:
        if not trajectories:
            raise ReplayError("the file holds no trajectories")
        return list(trajectories)
    chosen = [trajectory for trajectory in trajectories if trajectory.task_id == episode]
    if not chosen:
        known = ", ".join(trajectory.task_id for trajectory in trajectories[:5])
        more = f" and {len(trajectories) - 5} more" if len(trajectories) > 5 else ""
        raise ReplayError(f"no episode {episode!r} in the file (episodes: {known or 'none'}{more})")
    return chosen


def redacted_steps(steps: Iterable[ReplayStep]) -> list[ReplayStep]:
    """Steps that type a redaction placeholder: replay types the placeholder, not the original text."""
    return [
        step
        for step in steps
        if any(isinstance(call, WriteCall) and PLACEHOLDER.search(call.text) for call in step.calls)
    ]


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


def replay(
    trajectories: Sequence[Trajectory],
    *,
    display: str | None = None,
    pacing: Pacing | None = None,
    screen: ScreenSize | None = None,
    on_step: Callable[[int, int, ReplayStep], None] | None = None,
) -> ReplayResult:
    """Replay ``trajectories`` in order on ``display``, de-normalised to ``screen`` (default: its size).

    Everything is parsed and checked first; a ReplayError before any input means nothing was sent.
    ``on_step(position, total, step)`` is called before each step runs.
    """
    steps = plan_replay(trajectories)
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
    )
