"""The demo's Tk form, XTEST driver and scripted session, on a real Xvfb with real injected input."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.script import (
    SENTENCES,
    TERMINAL_CLASS,
    find_window,
    read_app_state,
    run_scripted_session,
    start_demo_apps,
    with_corrected_typo,
)
from demotrace.demo.xdriver import SAME_SPOT_PX, apply_backspaces, canonical_key
from demotrace.model import Action

ONE_CYCLE_KINDS = [
    "click", "type",  # name
    "click", "type",  # email
    "click", "type",  # notes, with a corrected typo
    "double_click", "triple_click",
    "scroll", "click", "scroll",  # list down, pick a row, back up
    "drag", "middle_click",
    "right_click", "press",  # context menu, esc
    "hotkey",  # ctrl+s
    "click", "type", "press",  # xterm: command, enter
    "click",  # back to the form
]  # fmt: skip


@dataclass
class SessionRun:
    injected: list[Action]
    before: dict[str, Any]
    after: dict[str, Any]


@pytest.fixture(scope="module")
def session_run(desktop: VirtualDesktop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionRun]:
    state_file = tmp_path_factory.mktemp("demo-app") / "state.json"
    apps = start_demo_apps(desktop, state_file)
    try:
        before = read_app_state(state_file)
        injected = run_scripted_session(desktop.display, seed=7, app_state_file=state_file)
        # The last click is in the X server when the driver returns; let the app handle it before
        # it is stopped, as a person would (it writes its state on every change).
        deadline = time.monotonic() + 5
        while read_app_state(state_file).get("status_clicks", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        apps.stop()  # SIGTERM: the form writes its final state on the way out
    yield SessionRun(injected, before, read_app_state(state_file))


def _of_kind(actions: list[Action], kind: str) -> list[Action]:
    return [action for action in actions if action.kind == kind]


def test_apply_backspaces_edits_like_a_text_field() -> None:
    assert apply_backspaces("brwo\b\bown") == "brown"
    assert apply_backspaces("\b\bab\b") == "a"


def test_typo_is_corrected_back_to_the_sentence() -> None:
    rng = random.Random(3)
    for sentence in SENTENCES:
        typed = with_corrected_typo(sentence, rng)
        assert "\b" in typed
        assert apply_backspaces(typed) == sentence


def test_key_names_are_canonical() -> None:
    names = ("Escape", "return", "Control", "s", "S")
    assert [canonical_key(name) for name in names] == ["esc", "enter", "ctrl", "s", "S"]


@pytest.mark.x11
def test_ground_truth_has_the_cycle_kinds_in_order(session_run: SessionRun) -> None:
    assert [action.kind for action in session_run.injected] == ONE_CYCLE_KINDS
    presses = _of_kind(session_run.injected, "press")
    assert [action.keys for action in presses] == [["esc"], ["enter"]]
    assert _of_kind(session_run.injected, "hotkey")[0].keys == ["ctrl", "s"]


@pytest.mark.x11
def test_ground_truth_is_paced_so_actions_stay_apart(session_run: SessionRun) -> None:
    actions = session_run.injected
    assert all(b.t >= a.t_end for a, b in itertools.pairwise(actions))
    for previous, action in itertools.pairwise(actions):
        gap = action.t - previous.t_end
        assert gap >= 0.29, f"{previous.kind} → {action.kind} only {gap:.2f} s apart"
        if previous.x is not None and action.x is not None and action.kind.endswith("click"):
            assert previous.y is not None and action.y is not None
            px, py = (previous.end_x, previous.end_y) if previous.kind == "drag" else (previous.x, previous.y)
            assert px is not None and py is not None
            if max(abs(action.x - px), abs(action.y - py)) <= SAME_SPOT_PX:
                assert gap >= 0.6
    scrolls = _of_kind(actions, "scroll")
    assert [s.dy for s in scrolls] == [scrolls[0].dy, -scrolls[0].dy] and scrolls[0].dy < 0
    for action in actions:
        if action.kind in ("double_click", "triple_click"):
            clicks = 2 if action.kind == "double_click" else 3
            assert action.t_end - action.t < clicks * 0.3  # fast enough for any toolkit's multi-click


@pytest.mark.x11
def test_fields_hold_the_typed_text_with_backspaces_applied(session_run: SessionRun) -> None:
    typed = [action.text for action in _of_kind(session_run.injected, "type")]
    fields = session_run.after["fields"]
    assert [fields["name"], fields["email"], fields["notes"]] == typed[:3]
    assert fields["notes"] in SENTENCES
    assert "\b" not in "".join(text or "" for text in typed)


@pytest.mark.x11
def test_double_click_selects_a_word_and_triple_click_the_line(session_run: SessionRun) -> None:
    notes = session_run.after["fields"]["notes"]
    selections = [text.rstrip("\n") for text in session_run.after["notes_selections"]]
    words = notes.split(" ")
    assert any(text in words for text in selections), selections
    assert selections[-1] == notes


@pytest.mark.x11
def test_list_scrolled_down_and_came_back(session_run: SessionRun) -> None:
    ticks = -_of_kind(session_run.injected, "scroll")[0].dy
    lines_per_tick = 3
    top = session_run.after["list"]
    assert top["top"] == session_run.before["list"]["top"] == 0
    assert max(top["top_history"]) == ticks * lines_per_tick
    visible = session_run.before["layout"]["list_visible_rows"]
    [selected] = top["selection"]
    assert ticks * lines_per_tick <= selected < ticks * lines_per_tick + visible


@pytest.mark.x11
def test_drag_moves_the_item_by_the_drag_distance(session_run: SessionRun) -> None:
    [drag] = _of_kind(session_run.injected, "drag")
    assert drag.end_x is not None and drag.x is not None and drag.end_y is not None and drag.y is not None
    before, after = session_run.before["item"], session_run.after["item"]
    assert abs((after["x"] - before["x"]) - (drag.end_x - drag.x)) <= 2
    assert abs((after["y"] - before["y"]) - (drag.end_y - drag.y)) <= 2
    assert 140 <= abs(complex(drag.end_x - drag.x, drag.end_y - drag.y)) <= 160
    assert after["drags"] == 1


@pytest.mark.x11
def test_middle_click_recolours_the_item(session_run: SessionRun) -> None:
    assert session_run.after["middle_clicks"] == 1
    assert session_run.after["item"]["colour"] != session_run.before["item"]["colour"]


@pytest.mark.x11
def test_right_click_opens_the_menu_and_escape_closes_it(session_run: SessionRun) -> None:
    [right_click] = _of_kind(session_run.injected, "right_click")
    after = session_run.after
    assert after["right_clicks"] == 1
    assert (after["last_right_click"]["x"], after["last_right_click"]["y"]) == (right_click.x, right_click.y)
    assert after["menu_open"] is False
    assert after["menu_closes"] == 1


@pytest.mark.x11
def test_ctrl_s_saves_a_record(session_run: SessionRun) -> None:
    assert session_run.before["records"] == []
    assert session_run.after["records"] == [session_run.after["fields"]]


@pytest.mark.x11
def test_focus_went_to_the_xterm_and_came_back(session_run: SessionRun) -> None:
    history = session_run.after["focus_history"]
    assert "" in history  # the form lost focus to the terminal
    assert history[-1] != ""
    assert session_run.after["status_clicks"] == 1


@pytest.mark.x11
def test_form_writes_its_state_on_sigterm(session_run: SessionRun) -> None:
    assert session_run.after["exit_reason"] == "SIGTERM"


@pytest.mark.x11
def test_session_with_seconds_stops_between_steps(desktop: VirtualDesktop, tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    apps = start_demo_apps(desktop, state_file, xterm=False)
    try:
        injected = run_scripted_session(
            desktop.display, seed=11, seconds=0.5, app_state_file=state_file, xterm=False
        )
    finally:
        apps.stop()
    # The first step (name and email) runs whole, then the deadline has passed.
    assert [action.kind for action in injected] == ["click", "type", "click", "type"]
    fields = read_app_state(state_file)["fields"]
    assert [fields["name"], fields["email"]] == [injected[1].text, injected[3].text]
    assert apps.form.returncode == 0  # the SIGTERM handler closed it cleanly


@pytest.mark.x11
def test_apps_start_and_take_input_without_a_window_manager(
    bare_desktop: VirtualDesktop, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    apps = start_demo_apps(bare_desktop, state_file)
    try:
        assert find_window(bare_desktop.display, TERMINAL_CLASS) is not None
        injected = run_scripted_session(bare_desktop.display, seed=3, seconds=0.1, app_state_file=state_file)
    finally:
        apps.stop()
    fields = read_app_state(state_file)["fields"]
    assert [fields["name"], fields["email"]] == [injected[1].text, injected[3].text]
