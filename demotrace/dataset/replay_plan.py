"""Replay plans: each step's pyautogui code parsed into typed, checked calls (pure: no X, no pyautogui).

A step's ``value.code`` is never executed. It is parsed with :mod:`ast`, and only the pyautogui calls
in :data:`ALLOWED_FUNCTIONS` pass, with literal arguments (numbers, strings, lists of them) bound to a
fixed signature; pointer coordinates must be normalised to [0, 1]. Anything else (another function,
a name, an attribute, an f-string, pixel coordinates) is a :class:`ReplayError` naming the episode and
step. The whole selection is parsed and checked before the first input is sent, so bad input replays
nothing at all rather than half a trajectory.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from demotrace.dataset.export.agentnet import Trajectory
from demotrace.model import ButtonName

PointerFunction = Literal[
    "click", "doubleClick", "tripleClick", "rightClick", "middleClick", "moveTo", "dragTo"
]
KeyFunction = Literal["press", "hotkey", "keyDown", "keyUp"]

# A typed placeholder left by a redactor ("<EMAIL>"): see PlaceholderRule for what replay does with it.
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


@dataclass(frozen=True)
class PlaceholderRule:
    """What replay does with a step that types a redaction placeholder: type the value given for its
    kind (``values["CREDIT_CARD"]``), or leave the step out (``skip``); with neither, refuse."""

    values: Mapping[str, str]
    skip: bool = False


def resolve_placeholders(
    steps: Sequence[ReplayStep], rule: PlaceholderRule
) -> tuple[list[ReplayStep], list[str]]:
    """The steps to run, with placeholders replaced by their values, and the labels of skipped steps.

    Raises ReplayError, before any input, when a placeholder has no value and skipping was not asked:
    typing ``<CREDIT_CARD>`` into a real form is never what anyone wants."""
    missing: dict[str, list[str]] = {}
    runnable: list[ReplayStep] = []
    skipped: list[str] = []
    for step in steps:
        kinds = {
            match.group(0)[1:-1]
            for call in step.calls
            if isinstance(call, WriteCall)
            for match in PLACEHOLDER.finditer(call.text)
        }
        unknown = sorted(kind for kind in kinds if kind not in rule.values)
        if unknown and rule.skip:
            skipped.append(step.label)
            continue
        for kind in unknown:
            missing.setdefault(kind, []).append(step.label)
        runnable.append(_filled(step, rule.values) if kinds else step)
    if missing:
        where = "; ".join(f"<{kind}> in {', '.join(labels)}" for kind, labels in sorted(missing.items()))
        example = next(iter(sorted(missing)))
        raise ReplayError(
            f"steps type redaction placeholders ({where}): give the text with --value {example}=TEXT, "
            "or leave those steps out with --skip-redacted"
        )
    return runnable, skipped


def _filled(step: ReplayStep, values: Mapping[str, str]) -> ReplayStep:
    def fill(call: Call) -> Call:
        if not isinstance(call, WriteCall):
            return call
        return WriteCall(
            PLACEHOLDER.sub(lambda match: values.get(match.group(0)[1:-1], match.group(0)), call.text)
        )

    # The code stays as recorded (it is what gets printed): the values are typed, never shown.
    return ReplayStep(step.episode, step.index, step.code, tuple(fill(call) for call in step.calls))
