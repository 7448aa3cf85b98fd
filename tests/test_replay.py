"""Replay: pyautogui code parsed (never exec'd), run on a real X display; fidelity of a recorded session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from demotrace.dataset.export.agentnet import (
    ActionDetail,
    ScreenSize,
    StepValue,
    Trajectory,
    TrajectoryStep,
    action_code,
)
from demotrace.dataset.replay import keycode_at_level, to_pixels, untypeable
from demotrace.dataset.replay_plan import (
    KeyCall,
    PlaceholderRule,
    PointerCall,
    ReplayError,
    ScrollCall,
    WriteCall,
    parse_code,
    plan_replay,
    redacted_steps,
    resolve_placeholders,
    select_trajectories,
)
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.fidelity import compare_app_states, record_and_replay, replay_command
from demotrace.demo.script import read_app_state, start_demo_apps
from demotrace.model import Action

SCREEN = ScreenSize(width=1920, height=1080)


def trajectory_of(codes: list[str], task_id: str = "session-0000") -> Trajectory:
    detail = ActionDetail(
        kind="click",
        x=None,
        y=None,
        end_x=None,
        end_y=None,
        text=None,
        keys=None,
        dx=0,
        dy=0,
        t=0.0,
        t_end=0.0,
    )
    steps = [
        TrajectoryStep(
            index=index,
            image=None,
            value=StepValue(code=code, action="click", app=None, window=None, ts=0.0),
            action_detail=detail,
            image_region=None,
        )
        for index, code in enumerate(codes)
    ]
    return Trajectory(
        task_id=task_id, instruction="", session_id="session", screen=SCREEN, platform="x11",
        instruction_source="generated", end_reason="end_of_session", start_wall=0.0, end_wall=0.0, traj=steps,
    )  # fmt: skip


def write_jsonl(path: Path, trajectories: list[Trajectory]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(trajectory) + b"\n" for trajectory in trajectories))
    return path


# ----- parsing: the exporter's own code comes back as the same action ---------------------------------


def action(kind: Any, **fields: Any) -> Action:
    return Action(kind=kind, t=0.0, t_end=0.1, wall=0.0, **fields)


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (action("click", x=331, y=151), PointerCall("click", 331, 151, "left", 1)),
        (action("double_click", x=93, y=261), PointerCall("doubleClick", 93, 261, "left", 2)),
        (action("triple_click", x=241, y=261), PointerCall("tripleClick", 241, 261, "left", 3)),
        (action("right_click", x=548, y=722), PointerCall("rightClick", 548, 722, "right", 1)),
        (action("middle_click", x=1919, y=1079), PointerCall("middleClick", 1919, 1079, "middle", 1)),
    ],
)
def test_exported_clicks_parse_back_to_their_pixels(recorded: Action, expected: PointerCall) -> None:
    (call,) = parse_code(action_code(recorded, SCREEN), "step 0")
    assert isinstance(call, PointerCall)
    assert (call.function, call.button, call.clicks) == (expected.function, expected.button, expected.clicks)
    x, y = to_pixels(call.x, call.y, SCREEN)
    # Four decimals of a 1920-wide screen: within a pixel of where the recording clicked.
    assert abs(x - expected.x) <= 1 and abs(y - expected.y) <= 1


def test_exported_drag_scroll_keys_and_text_parse_back() -> None:
    drag = parse_code(action_code(action("drag", x=600, y=519, end_x=750, end_y=559), SCREEN), "s")
    assert [call.function for call in drag if isinstance(call, PointerCall)] == ["moveTo", "dragTo"]
    assert isinstance(drag[1], PointerCall) and to_pixels(drag[1].x, drag[1].y, SCREEN) == (750, 559)

    scroll = parse_code(action_code(action("scroll", x=684, y=270, dy=-4, dx=2), SCREEN), "s")
    assert [(c.clicks, c.horizontal) for c in scroll if isinstance(c, ScrollCall)] == [(-4, False), (2, True)]

    shift_click = parse_code(action_code(action("click", x=10, y=10, keys=["shift"]), SCREEN), "s")
    assert shift_click[0] == KeyCall("keyDown", ("shift",)) and shift_click[-1] == KeyCall(
        "keyUp", ("shift",)
    )

    assert parse_code(action_code(action("type", text='it\'s "quoted"\n'), SCREEN), "s") == (
        WriteCall('it\'s "quoted"\n'),
    )
    assert parse_code(action_code(action("press", keys=["esc"]), SCREEN), "s") == (
        KeyCall("press", ("esc",)),
    )
    assert parse_code(action_code(action("hotkey", keys=["ctrl", "s"]), SCREEN), "s") == (
        KeyCall("hotkey", ("ctrl", "s")),
    )


def test_opencua_spellings_are_accepted() -> None:
    assert parse_code("pyautogui.hotkey(keys=['ctrl', 'c'])", "s") == (KeyCall("hotkey", ("ctrl", "c")),)
    assert parse_code("pyautogui.hotkey(['alt', 'f4'])", "s") == (KeyCall("hotkey", ("alt", "f4")),)
    assert parse_code("import pyautogui\npyautogui.click(0.5, 0.25, duration=0.2)", "s") == (
        PointerCall("click", 0.5, 0.25),
    )
    assert parse_code("pyautogui.press(['down', 'down'], presses=2)", "s") == (
        KeyCall("press", ("down", "down"), 2),
    )


@pytest.mark.parametrize(
    ("code", "complaint"),
    [
        ("import os\nos.system('rm -rf /')", "only pyautogui calls"),
        ("__import__('os').system('id')", "only pyautogui calls"),
        ("exec('print(1)')", "only pyautogui calls"),
        ("pyautogui.screenshot('x.png')", "pyautogui.screenshot is not allowed"),
        ("pyautogui.click(x=523, y=310)", "x=523 is not normalised"),
        ("pyautogui.click(x=where, y=0.2)", "only literal arguments"),
        ("pyautogui.write(message=f'{secret}')", "only literal arguments"),
        ("pyautogui.click(*point)", "*args and **kwargs"),
        ("pyautogui.click(x=0.1)", "missing a required argument: 'y'"),
        ("pyautogui.click(x=0.1, y=0.2, button='back')", "button must be one of"),
        ("pyautogui.scroll('3')", "clicks must be an integer"),
        ("pyautogui.scroll(3, x=0.2)", "both x and y"),
        ("pyautogui.hotkey()", "non-empty list"),
        ("pyautogui.write(message=42)", "message must be a string"),
        ("x = pyautogui.position()", "only pyautogui calls"),
        ("pyautogui.click(x=0.1, y=", "not valid Python"),
        ("", "no pyautogui call"),
    ],
)
def test_anything_else_is_refused_naming_the_step(code: str, complaint: str) -> None:
    trajectory = trajectory_of(["pyautogui.click(x=0.1, y=0.1)", code], task_id="sess-0003")
    with pytest.raises(ReplayError) as raised:
        plan_replay([trajectory])
    assert "episode sess-0003 step 1" in str(raised.value)
    assert complaint in str(raised.value)


def test_choosing_an_episode() -> None:
    first, second = (
        trajectory_of(["pyautogui.press('a')"], "s-0000"),
        trajectory_of(["pyautogui.press('b')"], "s-0001"),
    )
    assert select_trajectories([first, second], None) == [first, second]
    assert select_trajectories([first, second], "s-0001") == [second]
    with pytest.raises(ReplayError, match="no episode 's-0009' in the file \\(episodes: s-0000, s-0001\\)"):
        select_trajectories([first, second], "s-0009")


def test_steps_typing_placeholders_are_listed() -> None:
    steps = plan_replay(
        [trajectory_of(["pyautogui.write(message='<EMAIL>')", "pyautogui.write(message='a<b')"])]
    )
    assert [step.index for step in redacted_steps(steps)] == [0]


def test_placeholders_are_filled_skipped_or_refused_before_any_input() -> None:
    steps = plan_replay(
        [
            trajectory_of(
                [
                    "pyautogui.write(message='pay <CREDIT_CARD> now')",
                    "pyautogui.write(message='to <EMAIL>')",
                    "pyautogui.press('enter')",
                ]
            )
        ]
    )
    with pytest.raises(ReplayError) as refused:
        resolve_placeholders(steps, PlaceholderRule({}))
    assert str(refused.value) == (
        "steps type redaction placeholders (<CREDIT_CARD> in episode session-0000 step 0; <EMAIL> in "
        "episode session-0000 step 1): give the text with --value CREDIT_CARD=TEXT, or leave those steps "
        "out with --skip-redacted"
    )
    filled, skipped = resolve_placeholders(steps, PlaceholderRule({"CREDIT_CARD": "4111", "EMAIL": "a@b.c"}))
    assert [call.text for step in filled[:2] for call in step.calls] == ["pay 4111 now", "to a@b.c"]  # type: ignore[union-attr]
    assert "4111" not in filled[0].code and skipped == []
    partly, skipped = resolve_placeholders(steps, PlaceholderRule({"EMAIL": "a@b.c"}, skip=True))
    assert [step.index for step in partly] == [1, 2]
    assert skipped == ["episode session-0000 step 0"]


def test_keys_the_keyboard_cannot_type_are_reported_per_step() -> None:
    steps = plan_replay([trajectory_of(["pyautogui.write(message='café')", "pyautogui.press('enter')"])])
    keyboard = {**{char: 38 for char in "caf"}, "enter": 36}
    assert untypeable(steps, keyboard) == ["episode session-0000 step 0: cannot type 'é' on this display"]


def test_keycode_at_level_picks_the_shift_level_asked_for() -> None:
    # X's default keymap: '<' is unshifted on the ISO key 94 and shifted on the comma key 59.
    levels = [(94, 0), (59, 1), (94, 2), (59, 3)]
    assert keycode_at_level(levels, shifted=True) == 59
    assert keycode_at_level(levels, shifted=False) == 94
    assert keycode_at_level([(51, 1)], shifted=False) is None


# ----- comparing final states -----------------------------------------------------------------------------


def app_state(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "fields": {"name": "Ada Lovelace", "email": "ada.lovelace@example.org", "notes": "Call Sam"},
        "notes_selections": ["Call"],
        "list": {"top": 0, "selection": [20]},
        "item": {"x": 190, "y": 80, "colour": "steelblue", "drags": 1},
        "middle_clicks": 1,
        "right_clicks": 1,
        "menu_open": False,
        "menu_closes": 1,
        "status_clicks": 1,
        "records": [{"name": "Ada Lovelace", "email": "ada.lovelace@example.org", "notes": "Call Sam"}],
        "pid": 1,
    }
    for key, value in changes.items():
        *parents, last = key.split("__")
        target = state
        for parent in parents:
            target = target[parent]
        target[last] = value
    return state


def test_equal_states_match_and_volatile_keys_are_ignored() -> None:
    comparison = compare_app_states(app_state(), app_state(pid=2, item__x=192, item__y=78))
    assert comparison.matches and comparison.differing == [] and comparison.redacted == []
    assert "fields.email" in [outcome.key for outcome in comparison.outcomes]


def test_placeholders_explain_redacted_text_separately() -> None:
    replayed = app_state(
        fields__email="<EMAIL>",
        records=[{"name": "Ada Lovelace", "email": "<EMAIL>", "notes": "Call Sam"}],
    )
    comparison = compare_app_states(app_state(), replayed)
    assert comparison.matches
    assert comparison.redacted == ["fields.email", "records"]


def test_differences_are_named() -> None:
    replayed = app_state(
        item__x=193, right_clicks=0, fields__email=">EMAIL>", fields__notes="Call Tom", list__selection=[]
    )
    del replayed["status_clicks"]
    comparison = compare_app_states(app_state(), replayed)
    assert not comparison.matches
    assert sorted(comparison.differing) == sorted(
        ["item.x", "right_clicks", "fields.email", "fields.notes", "list.selection", "status_clicks"]
    )
    assert comparison.describe("right_clicks") == "right_clicks: recorded 1, replayed 0"


# ----- on a real display --------------------------------------------------------------------------------


def form_point(layout: dict[str, Any], name: str) -> str:
    box = layout[name]
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    return f"x={x / SCREEN.width:.4f}, y={y / SCREEN.height:.4f}"


@pytest.mark.x11
def test_replay_drives_the_form_and_bad_input_sends_nothing(desktop: VirtualDesktop, tmp_path: Path) -> None:
    state_file = tmp_path / "app-state.json"
    apps = start_demo_apps(desktop, state_file, xterm=False)
    env = {**os.environ, "DISPLAY": desktop.display}
    try:
        layout = read_app_state(state_file)["layout"]
        name = f"pyautogui.click({form_point(layout, 'name')})"
        notes = f"pyautogui.click({form_point(layout, 'notes')})"
        broken = write_jsonl(
            tmp_path / "broken.jsonl",
            [trajectory_of([name, "pyautogui.write(message='typed')", "os.system('true')"])],
        )
        refused = subprocess.run(replay_command(broken), env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2
        assert "step 2: only pyautogui calls are allowed" in refused.stderr
        assert "nothing was replayed" in refused.stderr

        # Characters pyautogui types with shift on a US layout ('<', '?', '|'), typed on X's default keymap.
        text = "Ada <EMAIL> a|b? (100%)"
        good = write_jsonl(
            tmp_path / "good.jsonl",
            [
                trajectory_of([name, f"pyautogui.write(message={text!r})"], task_id="s-0000"),
                trajectory_of([notes, "pyautogui.write(message='second episode')"], task_id="s-0001"),
                trajectory_of(["pyautogui.hotkey('ctrl', 's')"], task_id="s-0002"),
            ],
        )
        # A placeholder is never typed as it is: without its value (or --skip-redacted) nothing runs.
        unfilled = subprocess.run(replay_command(good), env=env, capture_output=True, text=True, timeout=60)
        assert unfilled.returncode == 2
        assert unfilled.stderr.strip().splitlines() == [
            "error: steps type redaction placeholders (<EMAIL> in episode s-0000 step 1): give the text with "
            "--value EMAIL=TEXT, or leave those steps out with --skip-redacted (nothing was replayed)"
        ]
        replayed = subprocess.run(
            replay_command(good, "--speed", "3", "--value", "EMAIL=ada@example.org"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 5 steps" in replayed.stderr
        assert "ada@example.org" not in replayed.stderr  # typed, never printed
    finally:
        apps.stop()
    state = read_app_state(state_file)
    # Nothing from the refused files reached the form; everything from the good one did, in order.
    filled = text.replace("<EMAIL>", "ada@example.org")
    assert state["fields"] == {"name": filled, "email": "", "notes": "second episode"}
    assert state["records"] == [state["fields"]]
    # A click into the empty notes is a click, not a drag that selects the line end.
    assert state["notes_selections"] == []


@pytest.mark.x11
def test_replaying_a_recorded_session_reproduces_the_final_state(tmp_path: Path) -> None:
    # One scripted cycle on its own desktop, recorded, built, replayed on another; the typed email is
    # redacted in the dataset, so the email field and the saved record can only be matched as redacted.
    result = record_and_replay(tmp_path, seed=7)
    comparison = result.comparison
    assert comparison.differing == [], "\n".join(comparison.describe(key) for key in comparison.differing)
    assert comparison.redacted == ["fields.email", "records"]
    assert result.redacted_steps == 1
    # The states compared are the work of a whole cycle, not two untouched forms.
    recorded = result.recorded_state
    assert recorded["item"]["drags"] == 1 and recorded["right_clicks"] == 1 and len(recorded["records"]) == 1
    assert recorded["list"]["selection"] and recorded["fields"]["notes"]
