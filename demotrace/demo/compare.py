"""Compare the actions a dataset captured with the actions a driver injected (pure)."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from demotrace.model import Action
from demotrace.redact.text import redact_text

COORDINATE_TOLERANCE_PX = 2


@dataclass
class Comparison:
    injected: Counter[str] = field(default_factory=Counter)
    captured: Counter[str] = field(default_factory=Counter)
    matched: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def perfect(self) -> bool:
        return not self.problems and self.injected == self.captured == self.matched


def _close(a: int | None, b: int | None, tolerance: int) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tolerance


def describe(action: Action) -> str:
    detail = action.text if action.text is not None else "+".join(action.keys or [])
    where = f"({action.x},{action.y})" if action.x is not None else ""
    if action.kind == "drag":
        where += f"->({action.end_x},{action.end_y})"
    if action.kind == "scroll":
        detail = f"dx={action.dx} dy={action.dy}"
    return f"{action.kind}{where} {detail!r}".strip()


def differences(expected: Action, got: Action, tolerance: int = COORDINATE_TOLERANCE_PX) -> list[str]:
    """What differs between two actions of the same kind, in words (empty: they match)."""
    problems = []
    for name in ("x", "y", "end_x", "end_y"):
        if not _close(getattr(expected, name), getattr(got, name), tolerance):
            problems.append(f"{name} {getattr(got, name)} != {getattr(expected, name)}")
    if expected.kind == "type" and expected.text != got.text:
        problems.append(f"text {got.text!r} != {expected.text!r}")
    if expected.kind in ("press", "hotkey") and expected.keys != got.keys:
        problems.append(f"keys {got.keys} != {expected.keys}")
    if expected.kind == "scroll" and (expected.dx, expected.dy) != (got.dx, got.dy):
        problems.append(f"scroll ({got.dx},{got.dy}) != ({expected.dx},{expected.dy})")
    return problems


def as_redacted(actions: list[Action]) -> list[Action]:
    """What the dataset must hold for injected actions: typed text passes through the redactor."""
    return [
        msgspec.structs.replace(action, text=redact_text(action.text).text)
        if action.kind == "type" and action.text is not None
        else action
        for action in actions
    ]


def compare_actions(
    injected: list[Action], captured: list[Action], tolerance: int = COORDINATE_TOLERANCE_PX
) -> Comparison:
    """Align both sequences by kind (in order) and check every aligned pair's details."""
    result = Comparison(
        injected=Counter(action.kind for action in injected),
        captured=Counter(action.kind for action in captured),
    )
    matcher = difflib.SequenceMatcher(
        a=[action.kind for action in injected], b=[action.kind for action in captured], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for expected, got in zip(injected[i1:i2], captured[j1:j2], strict=True):
                problems = differences(expected, got, tolerance)
                if problems:
                    result.problems.append(f"{describe(expected)}: " + "; ".join(problems))
                else:
                    result.matched[expected.kind] += 1
            continue
        for expected in injected[i1:i2]:
            result.problems.append(f"missing: {describe(expected)}")
        for got in captured[j1:j2]:
            result.problems.append(f"invented: {describe(got)}")
    return result
