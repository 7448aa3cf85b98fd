"""Replay fidelity: does replaying a recorded session's trajectories leave the demo app as it was left?

1. Record one scripted cycle on a fresh virtual desktop (real recorder, collector, build), and keep the
   form's final state.
2. On another fresh desktop of the same size, start the xterm and the form again from their starting
   state (a new state file), and run ``demotrace replay`` on the built trajectories, in a process of
   its own (pyautogui binds to one display per process).
3. Stop the form (it writes its final state) and compare the two states, key by key.

What is compared (:data:`COMPARED_KEYS`): every entry field ("fields.*"), the notes' selection history
(the double and triple clicks), the list's top row and selection, the canvas item's position (within
:data:`POSITION_TOLERANCE_PX`), colour and drag count, the middle- and right-click counters, the context
menu's open flag and close count, the status-bar click count, and the saved records. Not compared: what
depends on timing or process (pid, layout, focus and list-scroll histories, exit reason).

Redaction: a dataset holds ``<EMAIL>`` where an email was typed, so the replay types ``<EMAIL>``. A key
whose replayed value equals the recorded one with every placeholder standing for some non-empty text
is "redacted" (expected, reported separately), not a difference. A placeholder matches any text, so
this cannot tell a right redaction from a wrong one; the redactors' own tests do that.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from demotrace.dataset.replay_plan import PLACEHOLDER

Outcome = Literal["match", "redacted", "differs"]

POSITION_TOLERANCE_PX = 2
# "fields.*" stands for every entry field either state has (a new field of the form is compared too).
COMPARED_KEYS = (
    "fields.*",
    "notes_selections",
    "list.top",
    "list.selection",
    "item.x",
    "item.y",
    "item.colour",
    "item.drags",
    "middle_clicks",
    "right_clicks",
    "menu_open",
    "menu_closes",
    "status_clicks",
    "records",
)
_TOLERANT_KEYS = frozenset({"item.x", "item.y"})
REPLAY_TIMEOUT_S = 600


class FidelityError(RuntimeError):
    pass


# ----- comparing states (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyOutcome:
    key: str
    recorded: Any
    replayed: Any
    outcome: Outcome


@dataclass(frozen=True)
class StateComparison:
    outcomes: tuple[KeyOutcome, ...]

    @property
    def matches(self) -> bool:
        """Equal on every compared key, redaction aside."""
        return not self.differing

    @property
    def differing(self) -> list[str]:
        return [item.key for item in self.outcomes if item.outcome == "differs"]

    @property
    def redacted(self) -> list[str]:
        return [item.key for item in self.outcomes if item.outcome == "redacted"]

    def describe(self, key: str) -> str:
        item = next(item for item in self.outcomes if item.key == key)
        return f"{key}: recorded {item.recorded!r}, replayed {item.replayed!r}"


def _placeholder_pattern(text: str) -> re.Pattern[str]:
    """``text`` with each placeholder standing for any non-empty text."""
    pieces = PLACEHOLDER.split(text)
    return re.compile(".+?".join(re.escape(piece) for piece in pieces), re.DOTALL)


def equal_but_redacted(recorded: Any, replayed: Any) -> bool:
    """Whether ``replayed`` is ``recorded`` with parts of its strings replaced by placeholders."""
    if isinstance(recorded, str) and isinstance(replayed, str):
        return recorded == replayed or _placeholder_pattern(replayed).fullmatch(recorded) is not None
    if isinstance(recorded, list) and isinstance(replayed, list):
        return len(recorded) == len(replayed) and all(
            equal_but_redacted(a, b) for a, b in zip(recorded, replayed, strict=True)
        )
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        return recorded.keys() == replayed.keys() and all(
            equal_but_redacted(recorded[name], replayed[name]) for name in recorded
        )
    return bool(recorded == replayed)


_MISSING = object()


def _lookup(state: Mapping[str, Any], key: str) -> Any:
    value: Any = state
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _outcome(key: str, recorded: Any, replayed: Any) -> Outcome:
    if recorded is _MISSING or replayed is _MISSING:
        return "differs"
    if key in _TOLERANT_KEYS and isinstance(recorded, int) and isinstance(replayed, int):
        return "match" if abs(recorded - replayed) <= POSITION_TOLERANCE_PX else "differs"
    if recorded == replayed:
        return "match"
    return "redacted" if equal_but_redacted(recorded, replayed) else "differs"


def compared_keys(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> list[str]:
    """COMPARED_KEYS with "fields.*" expanded to the fields of both states."""
    fields = sorted(set(recorded.get("fields") or {}) | set(replayed.get("fields") or {}))
    keys: list[str] = []
    for key in COMPARED_KEYS:
        keys += [f"fields.{name}" for name in fields] if key == "fields.*" else [key]
    return keys


def compare_app_states(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> StateComparison:
    """Key by key: match, redacted (explained by placeholders) or differs (a missing key differs)."""
    outcomes = []
    for key in compared_keys(recorded, replayed):
        before, after = _lookup(recorded, key), _lookup(replayed, key)
        outcome = _outcome(key, before, after)
        outcomes.append(
            KeyOutcome(
                key=key,
                recorded=None if before is _MISSING else before,
                replayed=None if after is _MISSING else after,
                outcome=outcome,
            )
        )
    return StateComparison(tuple(outcomes))


# ----- record, replay, compare (I/O) ---------------------------------------------------------------------


def replay_command(trajectories: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "demotrace.cli.replay", str(trajectories), *extra]


def replay_on_fresh_desktop(trajectories: Path, width: int, height: int, work: Path) -> dict[str, Any]:
    """Start the demo apps from scratch on a new width x height desktop, replay, return the form's state."""
    from demotrace.demo.desktop import VirtualDesktop
    from demotrace.demo.script import read_app_state, start_demo_apps

    work.mkdir(parents=True, exist_ok=True)
    state_file = work / "app-state.json"
    with VirtualDesktop(width=width, height=height) as desktop:
        apps = start_demo_apps(desktop, state_file)
        try:
            run = subprocess.run(
                # The dataset's placeholders are typed as they are and matched as "redacted" (above).
                replay_command(trajectories, "--type-placeholders"),
                env={**os.environ, "DISPLAY": desktop.display},
                capture_output=True,
                text=True,
                timeout=REPLAY_TIMEOUT_S,
            )
        finally:
            apps.stop()  # SIGTERM: the form writes its final state
        (work / "replay.log").write_text(run.stderr)
        if run.returncode != 0:
            raise FidelityError(f"replay failed (exit {run.returncode}):\n{run.stderr}")
    return read_app_state(state_file)


@dataclass
class FidelityResult:
    seed: int
    episodes: int
    steps: int
    redacted_steps: int
    recorded_state: dict[str, Any]
    replayed_state: dict[str, Any]
    comparison: StateComparison
    trajectories: Path


def record_and_replay(out: Path, *, seed: int, console: Console | None = None) -> FidelityResult:
    """Record one scripted cycle with ``seed`` into out/recording, replay it, compare the final states."""
    from demotrace.dataset.export.agentnet import decode_trajectories
    from demotrace.dataset.replay_plan import plan_replay, redacted_steps
    from demotrace.demo.run import record_scripted_session
    from demotrace.demo.script import read_app_state

    def say(message: str) -> None:
        if console is not None:
            console.print(message)

    out.mkdir(parents=True, exist_ok=True)
    recording = record_scripted_session(out / "recording", seconds=None, seed=seed)
    recorded_state = read_app_state(out / "recording" / "app-state.json")
    trajectories_file = recording.dataset / "trajectories.jsonl"
    trajectories = decode_trajectories(trajectories_file.read_bytes())
    if not trajectories:
        raise FidelityError(f"seed {seed}: the recording built no trajectories")
    screens = {(trajectory.screen.width, trajectory.screen.height) for trajectory in trajectories}
    if len(screens) != 1:
        raise FidelityError(f"seed {seed}: trajectories from screens of different sizes: {sorted(screens)}")
    ((width, height),) = screens
    steps = plan_replay(trajectories)
    say(f"seed {seed}: recorded {len(steps)} steps in {len(trajectories)} episodes; replaying")
    replayed_state = replay_on_fresh_desktop(trajectories_file, width, height, out / "replay")
    return FidelityResult(
        seed=seed,
        episodes=len(trajectories),
        steps=len(steps),
        redacted_steps=len(redacted_steps(steps)),
        recorded_state=recorded_state,
        replayed_state=replayed_state,
        comparison=compare_app_states(recorded_state, replayed_state),
        trajectories=trajectories_file,
    )
