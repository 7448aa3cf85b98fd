"""AgentNet JSONL, images, summary and viewer, built from synthetic batches and frames."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import msgspec

from demotrace.dataset.build import build_dataset
from demotrace.dataset.export.agentnet import (
    ScreenSize,
    action_code,
    actions_from_trajectory,
    decode_trajectories,
)
from demotrace.dataset.privacy import Pseudonyms, default_key_path
from demotrace.dataset.reduce import reduce_events
from demotrace.model import (
    Action,
    Batch,
    Button,
    Event,
    Frame,
    FrameTaken,
    Key,
    Monitor,
    SessionHeader,
    Window,
)

WALL0 = 1_700_000_000.0
SCREEN = ScreenSize(width=1920, height=1080)
PNG_BYTES = b"\x89PNG\r\n\x1a\n fake png payload"
WEBP_BYTES = b"RIFF\x00\x00\x00\x00WEBP fake"
HOSTILE_TITLE = '<script>alert("x")</script> & <b>'


def header(session_id: str) -> SessionHeader:
    return SessionHeader(
        session_id=session_id,
        device_id="dev",
        platform="x11",
        screen_width=1920,
        screen_height=1080,
        monitors=[Monitor(left=0, top=0, width=1920, height=1080)],
        double_click_ms=400,
        double_click_px=4,
        t=0.0,
        wall=WALL0,
    )


def calls(code: str) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(function, positional args, keyword args) of each pyautogui call, evaluated as literals."""
    parsed = []
    for statement in ast.parse(code).body:
        assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
        call = statement.value
        assert isinstance(call.func, ast.Attribute)
        assert isinstance(call.func.value, ast.Name) and call.func.value.id == "pyautogui"
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
        parsed.append((call.func.attr, args, kwargs))
    return parsed


def action(kind: Any, **fields: Any) -> Action:
    return Action(kind=kind, t=1.0, t_end=1.1, wall=WALL0 + 1.0, **fields)


# --- code ---------------------------------------------------------------------------------------------


def test_click_code_normalised_coordinates_reproduce_pixels_within_one_pixel() -> None:
    for x, y in [(0, 0), (1000, 335), (1919, 1079), (7, 1063)]:
        [(function, _, kwargs)] = calls(action_code(action("click", x=x, y=y), SCREEN))
        assert function == "click"
        assert 0.0 <= kwargs["x"] <= 1.0 and 0.0 <= kwargs["y"] <= 1.0
        assert abs(kwargs["x"] * 1920 - x) <= 1 and abs(kwargs["y"] * 1080 - y) <= 1


def test_each_click_kind_maps_to_its_pyautogui_function() -> None:
    expected = {
        "double_click": "doubleClick",
        "triple_click": "tripleClick",
        "right_click": "rightClick",
        "middle_click": "middleClick",
    }
    for kind, function in expected.items():
        assert [c[0] for c in calls(action_code(action(kind, x=960, y=540), SCREEN))] == [function]
    assert action_code(action("click", x=1000, y=335), SCREEN) == "pyautogui.click(x=0.5208, y=0.3102)"


def test_drag_code_moves_to_the_press_point_and_drags_to_the_release_point() -> None:
    code = action_code(action("drag", x=192, y=108, end_x=1728, end_y=972), SCREEN)
    assert calls(code) == [
        ("moveTo", [], {"x": 0.1, "y": 0.1}),
        ("dragTo", [], {"x": 0.9, "y": 0.9, "button": "left"}),
    ]


def test_modifier_held_during_a_click_is_held_in_the_code() -> None:
    code = action_code(action("click", x=960, y=540, keys=["shift"]), SCREEN)
    assert [c[0] for c in calls(code)] == ["keyDown", "click", "keyUp"]


def test_scroll_code_keeps_sign_and_position() -> None:
    down = calls(action_code(action("scroll", x=768, y=540, dy=-3), SCREEN))
    both = calls(action_code(action("scroll", x=0, y=0, dy=2, dx=-1), SCREEN))
    assert down == [("scroll", [-3], {"x": 0.4, "y": 0.5})]
    assert [(c[0], c[1]) for c in both] == [("scroll", [2]), ("hscroll", [-1])]


def test_write_code_round_trips_awkward_text() -> None:
    for text in ["hello", 'it\'s "quoted"', "back\\slash\nnew line", "ünïcödé ✓", "'); import os; ('"]:
        [(function, _, kwargs)] = calls(action_code(action("type", text=text), SCREEN))
        assert function == "write"
        assert kwargs["message"] == text


def test_press_and_hotkey_code() -> None:
    assert calls(action_code(action("press", keys=["enter"]), SCREEN)) == [("press", ["enter"], {})]
    assert calls(action_code(action("hotkey", keys=["ctrl", "s"]), SCREEN)) == [("hotkey", ["ctrl", "s"], {})]


# --- build --------------------------------------------------------------------------------------------


def session_batches() -> tuple[list[Batch], dict[str, Frame]]:
    """A small session: click in a hostile-titled window, type, press enter, and a click with no frame."""

    def frame_taken(t: float, frame_id: str) -> FrameTaken:
        return FrameTaken(
            t=t, wall=WALL0 + t, frame_id=frame_id, left=0, top=0, width=1920, height=1080, trigger="click"
        )

    def key(t: float, name: str, char: str | None, down: bool = True) -> Key:
        return Key(t=t, wall=WALL0 + t, down=down, key=name, char=char)

    first: list[Event] = [
        Window(
            t=0.1,
            wall=WALL0 + 0.1,
            app="Tk",
            title=HOSTILE_TITLE,
            pid=7,
            x=0,
            y=0,
            width=800,
            height=600,
            window_id=5,
        ),
        frame_taken(1.0, "frame-1"),
        Button(t=1.0, wall=WALL0 + 1.0, down=True, button="left", x=1000, y=335),
        Button(t=1.05, wall=WALL0 + 1.05, down=False, button="left", x=1000, y=335),
        frame_taken(2.0, "frame-2"),
        key(2.0, "h", "h"),
        key(2.1, "i", "i"),
    ]
    second: list[Event] = [
        key(2.2, "enter", "\r"),  # no frame of its own: reuses frame-2, the screen before typing
        key(2.25, "enter", "\r", down=False),
        frame_taken(3.0, "frame-lost"),
        Button(t=3.0, wall=WALL0 + 3.0, down=True, button="right", x=10, y=1070),
        Button(t=3.1, wall=WALL0 + 3.1, down=False, button="right", x=10, y=1070),
    ]
    batches = [
        Batch(batch_id="b1", session_id="s1", device_id="dev", seq=1, events=second),
        Batch(batch_id="b0", session_id="s1", device_id="dev", seq=0, events=first, header=header("s1")),
        Batch(batch_id="b1", session_id="s1", device_id="dev", seq=1, events=second),  # a retried upload
    ]
    frames = {
        "frame-1": Frame(frame_id="frame-1", session_id="s1", device_id="dev", t=1.0, wall=WALL0 + 1.0,
                         left=0, top=0, width=1920, height=1080, media_type="image/png", data=PNG_BYTES),
        "frame-2": Frame(frame_id="frame-2", session_id="s1", device_id="dev", t=2.0, wall=WALL0 + 2.0,
                         left=0, top=0, width=1920, height=1080, media_type="image/webp", data=WEBP_BYTES),
    }  # fmt: skip
    return batches, frames


def build(tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    batches, frames = session_batches()
    summary = build_dataset(batches, frames.get, tmp_path / "out")
    lines = (tmp_path / "out" / "trajectories.jsonl").read_text().splitlines()
    return summary, [json.loads(line) for line in lines]


def pseudonyms_of(out: Path) -> Pseudonyms:
    """The build's id pseudonyms: session, device and frame ids are keyed hashes in every output."""
    return Pseudonyms(bytes.fromhex((default_key_path(out)).read_text()))


def test_jsonl_has_one_episode_with_the_steps_in_order(tmp_path: Path) -> None:
    _, episodes = build(tmp_path)
    assert len(episodes) == 1
    episode = episodes[0]
    session = pseudonyms_of(tmp_path / "out").session("s1")
    assert episode["task_id"] == f"{session}-0000"
    assert episode["session_id"] == session
    assert episode["screen"] == {"width": 1920, "height": 1080}
    assert episode["platform"] == "x11"
    assert isinstance(episode["instruction"], str) and episode["instruction"]
    steps = episode["traj"]
    assert [s["index"] for s in steps] == [0, 1, 2, 3]
    assert [s["value"]["action"] for s in steps] == ["click", "type", "press", "right_click"]
    assert steps[1]["value"]["code"] == "pyautogui.write(message='hi')"
    assert steps[0]["value"]["app"] == "Tk" and steps[0]["value"]["window"] == HOSTILE_TITLE
    assert steps[0]["value"]["ts"] == WALL0 + 1.0


def test_normalised_coordinates_in_the_jsonl_reproduce_the_recorded_pixels(tmp_path: Path) -> None:
    _, episodes = build(tmp_path)
    for step in episodes[0]["traj"]:
        detail = step["action_detail"]
        if detail["x"] is None:
            continue
        [(_, _, kwargs)] = calls(step["value"]["code"])
        assert abs(kwargs["x"] * 1920 - detail["x"]) <= 1
        assert abs(kwargs["y"] * 1080 - detail["y"]) <= 1


def test_every_step_image_exists_with_its_stored_bytes_and_missing_frames_are_counted(tmp_path: Path) -> None:
    summary, episodes = build(tmp_path)
    out = tmp_path / "out"
    images = [step["image"] for step in episodes[0]["traj"]]
    frame_1, frame_2 = (pseudonyms_of(out).frame(frame_id) for frame_id in ("frame-1", "frame-2"))
    assert images == [f"images/{frame_1}.png", f"images/{frame_2}.webp", f"images/{frame_2}.webp", None]
    assert (out / f"images/{frame_1}.png").read_bytes() == PNG_BYTES
    assert (out / f"images/{frame_2}.webp").read_bytes() == WEBP_BYTES
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted([f"{frame_1}.png", f"{frame_2}.webp"])
    assert summary.frames_written == 2
    assert summary.steps_without_frame == 1


def test_summary_file_and_return_value_agree_with_the_output(tmp_path: Path) -> None:
    summary, _ = build(tmp_path)
    out = tmp_path / "out"
    figures = json.loads((out / "summary.json").read_text())
    assert figures["episodes"] == summary.episodes == 1
    assert figures["steps"] == summary.steps == 4
    assert figures["actions_by_kind"] == {"click": 1, "press": 1, "right_click": 1, "type": 1}
    assert figures["image_bytes"] == len(PNG_BYTES) + len(WEBP_BYTES)
    assert figures["jsonl_bytes"] == (out / "trajectories.jsonl").stat().st_size
    assert figures["total_bytes"] == (
        figures["image_bytes"] + figures["jsonl_bytes"] + (out / "index.html").stat().st_size
    )
    assert figures["trajectories_path"] == "trajectories.jsonl"
    assert figures["out_dir"] == "."
    assert Path(summary.viewer_path) == out / "index.html"
    assert json.loads(msgspec.json.encode(summary))["steps"] == 4  # encodable as returned (CLI prints it)


def test_viewer_escapes_titles_and_marks_the_click_in_percent(tmp_path: Path) -> None:
    build(tmp_path)
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<script>") == 1  # ours (a click shows the whole frame); none from the data
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in page
    # The click at (1000, 335) on a 1920x1080 frame.
    assert "left:52.083%;top:31.019%" in page
    assert f'src="images/{pseudonyms_of(tmp_path / "out").frame("frame-1")}.png"' in page
    assert "http://" not in page and "https://" not in page


def test_viewer_shows_both_ends_of_a_drag(tmp_path: Path) -> None:
    events: list[Event] = [
        Button(t=1.0, wall=WALL0 + 1, down=True, button="left", x=480, y=270),
        Button(t=1.5, wall=WALL0 + 1.5, down=False, button="left", x=1440, y=810),
    ]
    batch = Batch(batch_id="b", session_id="d", device_id="dev", seq=0, events=events, header=header("d"))
    build_dataset([batch], lambda _: None, tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert 'class="mark" style="left:25.0%;top:25.0%"' in page
    assert 'class="mark end" style="left:75.0%;top:75.0%"' in page


def test_frame_id_cannot_write_outside_the_images_folder(tmp_path: Path) -> None:
    hostile_id = "../../escaped"
    events: list[Event] = [
        FrameTaken(t=1.0, wall=WALL0 + 1, frame_id=hostile_id, left=0, top=0, width=10, height=10,
                   trigger="click"),
        Button(t=1.0, wall=WALL0 + 1, down=True, button="left", x=1, y=1),
        Button(t=1.1, wall=WALL0 + 1.1, down=False, button="left", x=1, y=1),
    ]  # fmt: skip
    batch = Batch(batch_id="b", session_id="h", device_id="dev", seq=0, events=events, header=header("h"))
    frame = Frame(frame_id=hostile_id, session_id="h", device_id="dev", t=1.0, wall=WALL0 + 1, left=0, top=0,
                  width=10, height=10, media_type="image/png", data=PNG_BYTES)  # fmt: skip
    out = tmp_path / "deep" / "out"
    build_dataset([batch], {hostile_id: frame}.get, out)
    written = list((out / "images").iterdir())
    assert len(written) == 1 and written[0].read_bytes() == PNG_BYTES
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "deep" / "escaped.png").exists()


def test_session_without_header_is_skipped_and_counted(tmp_path: Path) -> None:
    orphan = Batch(batch_id="x", session_id="orphan", device_id="dev", seq=3, events=[])
    summary = build_dataset([orphan], lambda _: None, tmp_path)
    assert (summary.sessions, summary.sessions_without_header, summary.episodes) == (0, 1, 0)
    assert (tmp_path / "trajectories.jsonl").read_text() == ""


def test_reading_the_jsonl_back_gives_the_reduced_actions(tmp_path: Path) -> None:
    batches, _ = session_batches()
    build_dataset(batches, lambda _: None, tmp_path)
    [trajectory] = decode_trajectories((tmp_path / "trajectories.jsonl").read_bytes())
    events = sorted([e for b in batches[:2] for e in b.events], key=lambda e: e.t)
    expected = reduce_events(header("s1"), events)
    read_back = actions_from_trajectory(trajectory)
    fields = ("kind", "t", "t_end", "wall", "x", "y", "end_x", "end_y", "text", "keys", "dx", "dy")
    assert [[getattr(a, f) for f in fields] for a in read_back] == [
        [getattr(a, f) for f in fields] for a in expected
    ]


def test_viewer_has_an_episode_index_compact_steps_and_plain_end_reasons(tmp_path: Path) -> None:
    from demotrace.dataset.episodes import Gap
    from demotrace.dataset.export.agentnet import decode_trajectories
    from demotrace.dataset.export.viewer import END_REASONS, render_viewer

    build(tmp_path)
    (recorded,) = decode_trajectories((tmp_path / "out" / "trajectories.jsonl").read_bytes())
    marked = msgspec.structs.replace(
        recorded,
        task_id="t-0001",
        instruction="list files",
        end_reason="task_end",
        gaps=[Gap(1, 12.0, "denied app")],
    )
    assert decode_trajectories(msgspec.json.encode(marked)) == [marked]  # gaps survive the file
    page = render_viewer([recorded, marked])
    index = page[page.index("<nav>") : page.index("</nav>")]
    assert 'href="#t-0001"' in index and f'href="#{recorded.task_id}"' in index
    assert 'id="t-0001"' in page
    assert "ended by" not in page and "task_end" not in page
    assert END_REASONS["task_end"] in page
    assert "12 s not captured here (denied app); the task went on after it" in page
    steps = len(recorded.traj) + len(marked.traj)
    assert page.count('<div class="step"') == steps  # one compact row per step, each image once
