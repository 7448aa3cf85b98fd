"""The recorder on a real X server: XTEST input (xdotool) into real xterms, read back from the spool."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil  # type: ignore[import-untyped]
import pytest
from PIL import Image

from demotrace.capture.paths import simplify
from demotrace.capture.platform.x11 import X11Platform, parse_xsettings
from demotrace.capture.recorder import RecorderError
from demotrace.capture.triggers import TriggerState, frame_trigger, monitor_at
from demotrace.dataset.load import load_actions
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.spool import Spool, open_spool
from demotrace.frames.images import choose_media_type
from demotrace.frames.resolver import resolving_loader
from demotrace.model import (
    Batch,
    Button,
    Event,
    Frame,
    FrameTaken,
    Key,
    Marker,
    Monitor,
    MovePath,
    Scroll,
    Window,
)
from tests.recorder_thread import recording

pytestmark = pytest.mark.x11

BATCH_SECONDS = 0.3
EventT = TypeVar("EventT")


# -- helpers -------------------------------------------------------------------------------------


def xdotool(desktop: VirtualDesktop, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env=desktop.env(), check=True, capture_output=True, text=True)
    return done.stdout.strip()


def spawn_xterm(desktop: VirtualDesktop, title: str, geometry: str) -> tuple[subprocess.Popen[bytes], int]:
    """An xterm with a title, at a place; returns the process and its window id once it is mapped."""
    process = desktop.spawn(["xterm", "-title", title, "-geometry", geometry])
    window_id = int(xdotool(desktop, "search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[0])
    return process, window_id


@pytest.fixture()
def xterms(desktop: VirtualDesktop) -> Iterator[list[subprocess.Popen[bytes]]]:
    """xterms a test spawns on the shared desktop; closed afterwards so the next test starts clean."""
    spawned: list[subprocess.Popen[bytes]] = []
    yield spawned
    for process in spawned:
        process.terminate()
        process.wait(timeout=5)


def make_spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", os.urandom(32))


def batches_of(spool: Spool) -> list[Batch]:
    return list(spool.batches())


def events_of(spool: Spool) -> list[Event]:
    return [event for batch in batches_of(spool) for event in batch.events]


def of_type(events: list[Event], kind: type[EventT]) -> list[EventT]:
    return [event for event in events if isinstance(event, kind)]


def settle() -> None:
    """Let the listener and the processing thread see what xdotool injected, and a batch commit."""
    time.sleep(BATCH_SECONDS + 0.7)


# -- pure decisions (no X) -------------------------------------------------------------------------


def test_frame_triggers_mark_the_start_of_each_action() -> None:
    state = TriggerState()
    decisions: list[str | None] = []

    def decide(kind: str, t: float, **facts: object) -> None:
        nonlocal state
        trigger, state = frame_trigger(state, kind, t, **facts)  # type: ignore[arg-type]
        decisions.append(trigger)

    decide("button_down", 1.0, x=10, y=10, button="left")
    decide("button_up", 1.05)
    decide("button_down", 1.2, x=12, y=11, button="left")  # second click of a double click
    decide("button_up", 1.25)
    decide("modifier_down", 2.0)  # shift of a capital: not an action by itself
    decide("key_down", 2.1)  # first key after mouse work
    decide("key_down", 2.3)
    decide("key_down", 3.5)  # after a pause of more than 1 s: a new burst
    decide("modifier_down", 3.6)
    decide("key_down", 3.7, hotkey=True)
    decide("scroll", 3.8)
    decide("scroll", 3.9)
    decide("key_down", 4.0)  # after a scroll: a new burst
    decide("button_down", 4.1, x=500, y=500, button="left")
    assert decisions == [
        "click",
        None,
        None,
        None,
        None,
        "key",
        None,
        "key",
        None,
        "hotkey",
        "scroll",
        None,
        "key",
        "click",
    ]


def test_encoding_choice_and_monitor_under_the_pointer() -> None:
    assert choose_media_type(40) == "image/png"
    assert choose_media_type(None) == "image/webp"
    monitors = [Monitor(0, 0, 1920, 1080), Monitor(1920, 0, 1280, 1024)]
    assert monitor_at(monitors, 2000, 10) == monitors[1]
    assert monitor_at(monitors, 5000, 5000) == monitors[0]


def xsettings_blob(settings: dict[str, int]) -> bytes:
    body = b""
    for name, value in settings.items():
        encoded = name.encode()
        padded = encoded + b"\0" * (-len(encoded) % 4)
        body += struct.pack("<BxH", 0, len(encoded)) + padded + struct.pack("<Ii", 0, value)
    return struct.pack("<B3xII", 0, 1, len(settings)) + body


def test_xsettings_are_parsed() -> None:
    blob = xsettings_blob({"Net/DoubleClickTime": 250, "Net/DoubleClickDistance": 8})
    assert parse_xsettings(blob) == {"Net/DoubleClickTime": 250, "Net/DoubleClickDistance": 8}
    assert parse_xsettings(blob[:20]) == {}  # truncated: nothing complete to read
    assert parse_xsettings(b"") == {}


# -- the recorder on Xvfb + openbox ---------------------------------------------------------------


def test_input_is_recorded_with_exact_positions_keys_paths_and_frames(
    desktop: VirtualDesktop, xterms: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    process, _ = spawn_xterm(desktop, "demotrace-input", "100x30+0+0")
    xterms.append(process)
    xdotool(desktop, "mousemove", "100", "100")
    spool = make_spool(tmp_path)
    with recording(spool, desktop.display, batch_seconds=BATCH_SECONDS) as recorder:
        xdotool(desktop, "click", "1")
        for x, y in [(200, 100), (300, 100), (300, 200), (300, 300)]:
            xdotool(desktop, "mousemove", str(x), str(y))
            time.sleep(0.03)
        xdotool(desktop, "click", "1")
        time.sleep(0.1)
        xdotool(desktop, "type", "hi")
        xdotool(desktop, "key", "ctrl+l")
        xdotool(desktop, "type", "A")
        xdotool(desktop, "click", "4")
        xdotool(desktop, "click", "5")
        settle()

    # Every callback was timed on both clocks; its own CPU time cannot exceed the time it took.
    wall, cpu = recorder.callback_latency(), recorder.callback_cpu()
    assert wall.count == cpu.count >= 20
    assert (
        0 < cpu.p50_ns <= wall.max_ns and cpu.max_ns <= wall.max_ns + 50_000
    )  # the CPU clock is read just after the wall clock
    batches = batches_of(spool)
    header = batches[0].header
    assert header is not None and all(batch.header is None for batch in batches[1:])
    assert (header.platform, header.screen_width, header.screen_height) == ("x11", 1920, 1080)
    assert header.monitors == [Monitor(0, 0, 1920, 1080)]
    assert (header.double_click_ms, header.double_click_px) == (400, 5)
    assert [batch.seq for batch in batches] == list(range(len(batches)))

    events = [event for batch in batches for event in batch.events]
    assert [event.t for event in events] == sorted(event.t for event in events)
    assert all(abs(event.wall - time.time()) < 60 for event in events)

    buttons = of_type(events, Button)
    assert [(b.down, b.button, b.x, b.y) for b in buttons] == [
        (True, "left", 100, 100),
        (False, "left", 100, 100),
        (True, "left", 300, 300),
        (False, "left", 300, 300),
    ]
    # A path is cut where a batch is committed; joined up, the pieces are the simplified movement.
    paths = of_type(events, MovePath)
    points = [(x, y, path.t + offset) for path in paths for x, y, offset in path.points]
    assert [(x, y) for x, y, _ in simplify(points)] == [(200, 100), (300, 100), (300, 300)]
    times = [t for _, _, t in points]
    assert times == sorted(times) and times[-1] - times[0] > 0.05
    assert all(path.points[0][2] == 0 for path in paths)

    keys = of_type(events, Key)
    presses = [(k.key, k.char, k.modifiers) for k in keys if k.down]
    assert presses == [
        ("h", "h", []),
        ("i", "i", []),
        ("ctrl", None, []),
        ("l", None, ["ctrl"]),
        ("shift", None, []),
        ("a", "A", ["shift"]),
    ]
    assert {k.key for k in keys if not k.down} == {"h", "i", "ctrl", "l", "shift", "a"}
    assert next(k.keysym for k in keys if k.key == "ctrl") == 0xFFE3
    assert [(s.x, s.y, s.dx, s.dy) for s in of_type(events, Scroll)] == [(300, 300, 0, 1), (300, 300, 0, -1)]

    frames = of_type(events, FrameTaken)
    # The scroll up then back down is two actions, each with the screen it started from.
    assert [f.trigger for f in frames] == ["start", "click", "click", "key", "hotkey", "scroll", "scroll"]
    # Each frame carries the t of the event that triggered it and sorts just before it.
    for frame in frames[1:]:
        following = events[events.index(frame) + 1]
        assert following.t == frame.t and not isinstance(following, FrameTaken)
        assert frame.grabbed_t >= frame.t
    for frame in frames:
        stored = resolving_loader(spool.load_frame)(frame.frame_id)
        assert isinstance(stored, Frame) and stored.media_type in ("image/png", "image/webp")
        image = Image.open(io.BytesIO(stored.data))
        image.load()
        assert image.size == (1920, 1080) == (frame.width, frame.height)

    assert isinstance(events[-1], Marker) and events[-1].kind == "stop"


def test_nothing_is_written_and_no_cpu_is_spent_while_the_user_is_idle(
    desktop: VirtualDesktop, tmp_path: Path
) -> None:
    spool = make_spool(tmp_path)
    with recording(spool, desktop.display, batch_seconds=BATCH_SECONDS) as recorder:
        settle()  # the start frame and the first batch
        records_before = spool.stats()["records"]
        process = psutil.Process()
        cpu_before = sum(process.cpu_times()[:2])
        time.sleep(2.0)
        cpu_idle = sum(process.cpu_times()[:2]) - cpu_before
        assert spool.stats()["records"] == records_before
        assert len(recorder.frame_sizes()) == 1
    assert cpu_idle < 0.05, f"{cpu_idle:.3f} s of CPU in 2 s of idle"
    frames = of_type(events_of(spool), FrameTaken)
    assert [f.trigger for f in frames] == ["start"]


def test_window_focus_changes_between_two_xterms_are_followed(
    desktop: VirtualDesktop, xterms: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    left, left_id = spawn_xterm(desktop, "demotrace-left", "80x24+100+100")
    right, right_id = spawn_xterm(desktop, "demotrace-right", "80x24+900+500")
    xterms.extend([left, right])
    spool = make_spool(tmp_path)
    with recording(spool, desktop.display, batch_seconds=BATCH_SECONDS):
        xdotool(desktop, "mousemove", "300", "250", "click", "1")  # openbox focuses on click
        time.sleep(0.3)
        xdotool(desktop, "mousemove", "1100", "650", "click", "1")
        time.sleep(0.3)
        xdotool(desktop, "set_window", "--name", "demotrace-renamed", str(right_id))
        settle()

    windows = of_type(events_of(spool), Window)
    assert all(w.app == "XTerm" for w in windows), windows
    titles = [w.title for w in windows]
    # The first Window is the one focused at start: right was mapped last, so openbox focused it.
    assert titles == ["demotrace-right", "demotrace-left", "demotrace-right", "demotrace-renamed"]
    by_title = {w.title: w for w in windows}
    assert by_title["demotrace-left"].pid == left.pid and by_title["demotrace-left"].window_id == left_id
    assert by_title["demotrace-right"].pid == right.pid
    left_window = by_title["demotrace-left"]
    assert (left_window.x, left_window.y) == (100, 100)  # the frame, in root coordinates
    assert left_window.width > 480 and left_window.height > 316  # the client plus decorations


def test_double_click_settings_come_from_xsettings_when_a_daemon_owns_them(desktop: VirtualDesktop) -> None:
    from Xlib import X, display

    connection = display.Display(desktop.display)
    try:
        owner = connection.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
        settings_atom = connection.intern_atom("_XSETTINGS_SETTINGS")
        blob = xsettings_blob({"Net/DoubleClickTime": 250, "Net/DoubleClickDistance": 8})
        owner.change_property(settings_atom, settings_atom, 8, blob)
        owner.set_selection_owner(connection.intern_atom("_XSETTINGS_S0"), X.CurrentTime)
        connection.sync()
        platform = X11Platform(desktop.display)
        try:
            assert platform.double_click() == (250, 8)
        finally:
            platform.close()
    finally:
        connection.close()  # the selection goes with the connection


def test_without_a_window_manager_the_window_under_each_click_is_reported(
    bare_desktop: VirtualDesktop, tmp_path: Path
) -> None:
    upper, upper_id = spawn_xterm(bare_desktop, "demotrace-upper", "80x24+700+50")
    lower, _ = spawn_xterm(bare_desktop, "demotrace-lower", "80x24+50+450")
    xdotool(bare_desktop, "mousemove", "640", "400")  # the bare root: no window there
    spool = make_spool(tmp_path)
    with recording(spool, bare_desktop.display, batch_seconds=BATCH_SECONDS):
        xdotool(bare_desktop, "mousemove", "800", "100", "click", "1")
        time.sleep(0.2)
        xdotool(bare_desktop, "mousemove", "810", "120", "click", "1")  # same window: no new event
        time.sleep(0.2)
        xdotool(bare_desktop, "mousemove", "100", "500", "click", "1")
        settle()

    events = events_of(spool)
    windows = of_type(events, Window)
    assert [(w.app, w.title) for w in windows] == [
        ("", ""),
        ("XTerm", "demotrace-upper"),
        ("XTerm", "demotrace-lower"),
    ]
    upper_window = windows[1]
    assert (upper_window.x, upper_window.y, upper_window.pid, upper_window.window_id) == (
        700,
        50,
        upper.pid,
        upper_id,
    )
    downs = [b for b in of_type(events, Button) if b.down]
    assert windows[1].t == downs[0].t and windows[2].t == downs[2].t
    assert lower.pid == windows[2].pid


# -- failures and process life ---------------------------------------------------------------------


@contextmanager
def xvfb_without_record() -> Iterator[str]:
    number = next(
        n
        for n in range(300, 400)
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists()
    )
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "800x600x24", "-nolisten", "tcp", "-extension", "RECORD"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=5)


def recorder_process(spool_dir: Path, key_file: Path, display: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demotrace.device.bare_recorder",
            "--spool",
            str(spool_dir),
            "--key-file",
            str(key_file),
            "--display",
            display,
            "--batch-seconds",
            str(BATCH_SECONDS),
            "--accept-notice",  # scripted: the person of this test has accepted the notice
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_recording(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "recording", process.stderr.read() if process.stderr else line


def test_a_server_without_record_fails_clearly(tmp_path: Path) -> None:
    with xvfb_without_record() as display:
        with pytest.raises(RecorderError, match="RECORD"), recording(make_spool(tmp_path), display):
            pass
        process = recorder_process(tmp_path / "cli-spool", tmp_path / "key", display)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "RECORD extension" in stderr and "Traceback" not in stderr


def test_sigkill_leaves_every_committed_batch_readable(
    desktop: VirtualDesktop, xterms: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    process, _ = spawn_xterm(desktop, "demotrace-kill", "80x24+0+0")
    xterms.append(process)
    recorder = recorder_process(tmp_path / "spool", tmp_path / "key", desktop.display)
    try:
        wait_until_recording(recorder)
        xdotool(desktop, "mousemove", "50", "50", "click", "1")
        xdotool(desktop, "type", "kill")
        # A typing burst is held in memory until it ends (the redactor must see all of it before
        # anything is written): the click ends it, so "kill" is committed before the kill.
        xdotool(desktop, "click", "1")
        settle()
        xdotool(desktop, "type", "zz")  # maybe not committed yet: must not break what was
    finally:
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
    assert recorder.returncode == -signal.SIGKILL

    spool = open_spool(tmp_path / "spool", tmp_path / "key")
    events = events_of(spool)
    typed = "".join(k.char or "" for k in of_type(events, Key) if k.down)
    assert typed.startswith("kill")
    assert [(b.x, b.y) for b in of_type(events, Button)] == [(50, 50)] * 4
    for frame in of_type(events, FrameTaken):
        assert spool.load_frame(frame.frame_id) is not None
    assert not any(isinstance(event, Marker) for event in events)  # it never got to say goodbye
    spool.close()

    # The killed session builds into a dataset with the committed actions in it.
    out = tmp_path / "dataset"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "demotrace.cli",
            "build",
            "--spool",
            str(tmp_path / "spool"),
            "--key",
            str(tmp_path / "key"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    actions = load_actions(out / "trajectories.jsonl")
    assert [a.kind for a in actions][:3] == ["click", "type", "click"]
    assert actions[0].x == 50 and actions[0].y == 50
    assert actions[1].text is not None and actions[1].text.startswith("kill")


def test_sigterm_stops_cleanly_with_a_stop_marker(desktop: VirtualDesktop, tmp_path: Path) -> None:
    recorder = recorder_process(tmp_path / "spool", tmp_path / "key", desktop.display)
    wait_until_recording(recorder)
    recorder.send_signal(signal.SIGTERM)
    _, stderr = recorder.communicate(timeout=20)
    assert recorder.returncode == 0
    assert "demotrace: recording" in stderr and "callback latency p50=" in stderr and "own CPU p50=" in stderr
    events = events_of(open_spool(tmp_path / "spool", tmp_path / "key"))
    assert isinstance(events[-1], Marker) and events[-1].kind == "stop"
    assert [f.trigger for f in of_type(events, FrameTaken)] == ["start"]
