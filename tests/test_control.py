"""Employee controls: the pause (persisted, auto-resuming), the control socket (owner only), the CLI,
the tray menu and notifications — with real threads, real Unix sockets and a real X server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from demotrace.cli.control import register_control_commands
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.control import ControlServer
from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import ControlError, RecorderNotRunning, default_control_dir
from demotrace.device.notify import channels, dbus_command, gvariant_string, pause_message, show
from demotrace.device.pause import (
    PauseController,
    parse_duration,
    pause_minutes_for,
    read_pause_state,
    restored_pause,
)
from demotrace.device.tray import TrayActions, build_menu, draw_icon, menu_entries, status_text
from demotrace.policy import CaptureGate, CapturePolicy

NOBODY = 65534
START = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Markers:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, kind: str, text: str) -> None:
        self.seen.append((kind, text))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="dt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gate() -> CaptureGate:
    return CaptureGate(notice_accepted=True)


@pytest.fixture
def controller(gate: CaptureGate, short_dir: Path) -> Iterator[PauseController]:
    running = PauseController(gate, short_dir / "state" / "pause.json", pending_count=lambda: 7)
    yield running
    running.close()


@pytest.fixture
def markers() -> Markers:
    return Markers()


@pytest.fixture
def server(controller: PauseController, markers: Markers, short_dir: Path) -> Iterator[ControlServer]:
    with ControlServer(controller, markers, short_dir / "run" / "control.sock") as running:
        yield running


@pytest.fixture
def client(server: ControlServer) -> ControlClient:
    return ControlClient(server.path)


# --- pure decisions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("15m", 15.0), ("30m", 30.0), ("90s", 1.5), ("1h", 60.0), ("20", 20.0), ("2.5 min", 2.5)],
)
def test_durations_read_like_people_write_them(text: str, minutes: float) -> None:
    assert parse_duration(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["", "soon", "15x", "-5m", "1h30"])
def test_unreadable_durations_say_how_to_write_them(text: str) -> None:
    with pytest.raises(ControlError, match="like 15m or 90s"):
        parse_duration(text)


def test_pause_length_defaults_caps_and_refuses() -> None:
    policy = CapturePolicy(pause_default_minutes=10, pause_max_minutes=20)
    assert pause_minutes_for(None, policy) == (10, False)
    assert pause_minutes_for(5, policy) == (5, False)
    assert pause_minutes_for(45, policy) == (20, True)
    for bad in (0, -3, float("nan"), float("inf"), "5", True):
        with pytest.raises(ControlError):
            pause_minutes_for(bad, policy)  # type: ignore[arg-type]


def test_a_persisted_pause_is_kept_only_while_it_runs() -> None:
    assert restored_pause(START + 60, START) == START + 60
    assert restored_pause(START - 1, START) is None
    assert restored_pause(None, START) is None


# --- the pause controller ------------------------------------------------------------------------------


def test_pause_persists_and_a_restart_neither_shortens_nor_extends_it(short_dir: Path) -> None:
    clock = FakeClock()
    state_file = short_dir / "state" / "pause.json"
    gate = CaptureGate(clock=clock, notice_accepted=True)
    first = PauseController(gate, state_file, clock)
    paused_until = first.pause(None)
    assert paused_until == START + 15 * 60  # the policy's default
    assert gate.state.paused_until == paused_until
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert read_pause_state(state_file) == paused_until
    first.close()

    # The recorder restarts ten minutes later: the pause keeps its end, not a new 15 minutes.
    clock.now += 600
    restarted_gate = CaptureGate(clock=clock, notice_accepted=True)
    second = PauseController(restarted_gate, state_file, clock)
    assert restarted_gate.state.paused_until == paused_until
    assert second.status()["state"] == "paused"
    assert second.status()["remaining_seconds"] == pytest.approx(300)
    second.close()

    # Restarted after the pause ended: recording, and the stale file is gone.
    clock.now += 301
    late_gate = CaptureGate(clock=clock, notice_accepted=True)
    third = PauseController(late_gate, state_file, clock)
    assert late_gate.state.paused_until is None
    assert not state_file.exists()
    assert third.status()["state"] == "recording"
    third.close()


def test_pause_is_capped_at_the_maximum_and_zero_is_refused(gate: CaptureGate, short_dir: Path) -> None:
    clock = FakeClock()
    controller = PauseController(gate, short_dir / "pause.json", clock)
    assert controller.pause(90) == START + 30 * 60
    with pytest.raises(ControlError, match="more than zero"):
        controller.pause(0)
    with pytest.raises(ControlError):
        controller.pause(-1)
    assert gate.state.paused_until == START + 30 * 60  # a refused request changes nothing
    controller.close()


def test_expiry_resumes_exactly_when_due(gate: CaptureGate, short_dir: Path) -> None:
    clock = FakeClock()
    changes: list[tuple[str, float | None]] = []
    controller = PauseController(
        gate, short_dir / "pause.json", clock, on_change=lambda kind, until: changes.append((kind, until))
    )
    controller.pause(5)
    clock.now += 5 * 60 - 1
    assert not controller.expire_now_if_due()
    assert gate.state.paused_until is not None
    clock.now += 1
    assert controller.expire_now_if_due()
    assert gate.state.paused_until is None
    assert not (short_dir / "pause.json").exists()
    assert [kind for kind, _ in changes] == ["paused", "expired"]
    controller.close()


def test_the_timer_resumes_capture_by_itself(gate: CaptureGate, short_dir: Path) -> None:
    resumed = threading.Event()

    def on_change(kind: str, _until: float | None) -> None:
        if kind == "expired":
            resumed.set()

    controller = PauseController(gate, short_dir / "pause.json", on_change=on_change)
    controller.pause(0.01)  # 0.6 s
    assert gate.state.paused_until is not None
    assert resumed.wait(30), "the pause never ended by itself"
    assert gate.state.paused_until is None
    assert controller.status()["state"] == "recording"
    controller.close()


def test_resume_cancels_the_pause_and_its_file(gate: CaptureGate, short_dir: Path) -> None:
    controller = PauseController(gate, short_dir / "pause.json")
    controller.pause(10)
    controller.resume()
    assert gate.state.paused_until is None
    assert not (short_dir / "pause.json").exists()
    controller.close()


def test_status_reports_exemption_and_spool(controller: PauseController, gate: CaptureGate) -> None:
    status = controller.status()
    assert status["state"] == "recording"
    assert status["spool_pending"] == 7
    assert status["policy_mode"] == "denylist"
    gate.update_state(exempt=True)
    assert controller.status()["state"] == "exempt"


# --- the control socket --------------------------------------------------------------------------------


def test_socket_and_folder_are_private(server: ControlServer) -> None:
    assert stat.S_IMODE(server.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(server.path.stat().st_mode)


def test_default_folder_follows_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_control_dir() == tmp_path / "demotrace"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_control_dir() == tmp_path / ".cache" / "demotrace"


def test_pause_resume_status_over_the_socket(client: ControlClient, gate: CaptureGate) -> None:
    answer = client.pause(10)
    assert answer["minutes"] == 10
    assert "capped" not in answer
    assert gate.state.paused_until == pytest.approx(answer["paused_until"])
    status = client.status()
    assert status["state"] == "paused"
    assert 0 < status["remaining_seconds"] <= 600
    assert status["spool_pending"] == 7
    client.resume()
    assert gate.state.paused_until is None
    assert client.status()["state"] == "recording"


def test_a_too_long_pause_is_capped_and_the_answer_says_so(client: ControlClient, gate: CaptureGate) -> None:
    answer = client.pause(45)
    assert answer["capped"] is True
    assert answer["minutes"] == 30
    assert "at most 30" in answer["message"]
    assert gate.state.paused_until == pytest.approx(answer["paused_until"])


def test_a_pause_without_length_uses_the_policy_default(client: ControlClient) -> None:
    assert client.pause()["minutes"] == 15


def test_bad_requests_get_clear_errors_and_change_nothing(client: ControlClient, gate: CaptureGate) -> None:
    with pytest.raises(ControlError, match="more than zero"):
        client.pause(0)
    with pytest.raises(ControlError, match="unknown command"):
        client.request("explode")
    with pytest.raises(ControlError, match="a task needs a description"):
        client.request("task_start")
    assert gate.state.paused_until is None
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(client.path))
    raw.sendall(b"this is not json\n")
    answer = json.loads(raw.makefile("rb").readline())
    raw.close()
    assert answer["ok"] is False and "not JSON" in answer["error"]


def test_task_markers_reach_the_recorder_redacted(client: ControlClient, markers: Markers) -> None:
    answer = client.task_start("  Pay invoice   with card 4111 1111 1111 1111 ")
    assert "4111" not in answer["text"]
    client.task_end()
    assert markers.seen[0][0] == "task_start"
    assert markers.seen[0][1].startswith("Pay invoice with card <")
    assert "4111" not in markers.seen[0][1]
    assert markers.seen[1] == ("task_end", "")


def test_no_task_markers_on_an_exempt_device(
    client: ControlClient, gate: CaptureGate, markers: Markers
) -> None:
    gate.update_state(exempt=True)
    with pytest.raises(ControlError, match="exempt"):
        client.task_start("anything")
    assert markers.seen == []


def test_no_recorder_is_a_clear_error(short_dir: Path) -> None:
    with pytest.raises(RecorderNotRunning, match="no recorder is running"):
        ControlClient(short_dir / "nothing.sock").status()


def test_a_second_server_on_the_same_socket_is_refused(
    server: ControlServer, controller: PauseController
) -> None:
    with pytest.raises(ControlError, match="already answers"):
        ControlServer(controller, Markers(), server.path).start()


def test_a_stale_socket_left_by_a_dead_recorder_is_replaced(
    controller: PauseController, short_dir: Path
) -> None:
    path = short_dir / "run" / "control.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    with ControlServer(controller, Markers(), path):
        assert ControlClient(path).status()["state"] == "recording"
    assert not path.exists()


def test_watch_streams_every_change(client: ControlClient, gate: CaptureGate) -> None:
    stream = client.watch()
    assert next(stream)["state"] == "recording"
    ControlClient(client.path).pause(5)
    assert next(stream)["state"] == "paused"
    ControlClient(client.path).resume()
    assert next(stream)["state"] == "recording"
    stream.close()


def _request_as_nobody(path: Path) -> dict[str, Any]:
    """Send a status request from a forked child that has become uid nobody; returns what it got."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, ask, report through the pipe, exit at once
        os.close(read_end)
        outcome: dict[str, Any]
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome = {"answer": ControlClient(path, timeout=10).status()}
        except ControlError as error:
            outcome = {"error": str(error)}
        except BaseException as error:
            outcome = {"crash": repr(error)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    return result


needs_root = pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")


@needs_root
def test_another_user_is_refused_by_the_peer_check(server: ControlServer, gate: CaptureGate) -> None:
    # Open the folder and socket to everyone, as a careless admin might: the uid check must still hold.
    os.chmod(server.path.parent.parent, 0o755)  # the test's own temporary folder
    os.chmod(server.path.parent, 0o777)
    os.chmod(server.path, 0o777)
    outcome = _request_as_nobody(server.path)
    assert "error" in outcome, outcome
    assert "refused" in outcome["error"] and f"uid {NOBODY}" in outcome["error"]
    assert gate.state.paused_until is None


@needs_root
def test_another_user_cannot_even_reach_the_socket(server: ControlServer) -> None:
    os.chmod(server.path.parent.parent, 0o755)
    os.chmod(server.path.parent, 0o711)  # the folder may be traversed; the 0600 socket still refuses
    outcome = _request_as_nobody(server.path)
    assert "error" in outcome, outcome
    assert "another user" in outcome["error"]


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register_control_commands(app)
    return app


def test_cli_pause_status_resume_task(cli: typer.Typer, client: ControlClient, markers: Markers) -> None:
    runner = CliRunner()
    socket_args = ["--socket", str(client.path)]
    result = runner.invoke(cli, ["pause", "90s", *socket_args])
    assert result.exit_code == 0, result.output
    assert "paused for 1.5 minutes" in result.output
    result = runner.invoke(cli, ["status", *socket_args])
    assert result.exit_code == 0, result.output
    assert "paused" in result.output and "waiting to upload" in result.output
    result = runner.invoke(cli, ["pause", "2h", *socket_args])
    assert result.exit_code == 0
    assert "at most 30" in result.output and "paused for 30 minutes" in result.output
    result = runner.invoke(cli, ["resume", *socket_args])
    assert result.exit_code == 0 and "resumed" in result.output
    result = runner.invoke(cli, ["task", "start", "Book a meeting room", *socket_args])
    assert result.exit_code == 0 and "Book a meeting room" in result.output
    result = runner.invoke(cli, ["task", "end", *socket_args])
    assert result.exit_code == 0
    assert markers.seen == [("task_start", "Book a meeting room"), ("task_end", "")]


def test_cli_without_a_recorder_fails_clearly(cli: typer.Typer, short_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--socket", str(short_dir / "none.sock")])
    assert result.exit_code == 3
    assert "no recorder is running" in result.output


def test_cli_answers_say_what_really_happened(
    cli: typer.Typer, client: ControlClient, gate: CaptureGate, markers: Markers
) -> None:
    runner = CliRunner()
    socket_args = ["--socket", str(client.path)]

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, *socket_args])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert run("resume") == "Recording was not paused: nothing changed."
    assert run("task", "end") == "No task was open: nothing to end."
    assert markers.seen == []  # no marker for a task that was never started
    assert run("task", "start", "File expenses") == "Task started: File expenses"
    assert "File expenses" in run("status")
    assert run("task", "start", "Book a room") == (
        "Task started: Book a room (the open task ended first: File expenses)"
    )
    assert run("task", "end") == "Task ended: Book a room"
    assert run("task", "end") == "No task was open: nothing to end."
    assert markers.seen == [("task_start", "File expenses"), ("task_start", "Book a room"), ("task_end", "")]
    gate.update_state(exempt=True)
    assert run("pause", "5m") == (
        "Nothing to pause: this device is exempt from recording, so nothing is recorded."
    )
    assert gate.state.paused_until is None
    assert run("resume") == "Nothing to resume: this device is exempt from recording, so nothing is recorded."


def test_cli_refuses_an_empty_task_in_one_line(
    cli: typer.Typer, client: ControlClient, markers: Markers
) -> None:
    result = CliRunner().invoke(cli, ["task", "start", "  ", "--socket", str(client.path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'error: a task needs a description: demotrace task start "what you are about to do"'
    ]
    assert markers.seen == []


def test_status_says_why_uploads_wait_and_when_they_go() -> None:
    from demotrace.cli.control import upload_line

    assert upload_line({"spool_pending": 4, "uploads": False}) == (
        "4 records, kept on this device (no collector: nothing is uploaded)"
    )
    assert upload_line({"spool_pending": 0, "uploads": True}) == "nothing"
    assert (
        upload_line({"spool_pending": 1, "uploads": True, "upload_wait": None}) == "1 record, uploading now"
    )
    waiting = {
        "spool_pending": 47,
        "uploads": True,
        "upload_wait": "metered network: uploads wait for an unmetered one",
        "upload_next_try": None,
    }
    assert upload_line(waiting) == (
        "47 records: metered network: uploads wait for an unmetered one; they go as soon as that changes"
    )
    retrying = {**waiting, "upload_wait": "cannot reach collector http://c:1", "upload_next_try": 0.0}
    assert upload_line(retrying).startswith("47 records: cannot reach collector http://c:1; next try at ")


def test_cli_refuses_a_bad_duration(cli: typer.Typer, client: ControlClient, gate: CaptureGate) -> None:
    result = CliRunner().invoke(cli, ["pause", "soon", "--socket", str(client.path)])
    assert result.exit_code == 2
    assert "cannot read duration" in result.output
    assert gate.state.paused_until is None


# --- the tray ----------------------------------------------------------------------------------------


class Told:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, title: str, body: str) -> None:
        self.messages.append((title, body))


def test_icon_is_red_while_recording_and_grey_while_paused() -> None:
    red = draw_icon(True).getpixel((32, 32))
    grey = draw_icon(False).getpixel((32, 32))
    corner = draw_icon(True).getpixel((0, 0))
    assert isinstance(red, tuple) and isinstance(grey, tuple) and isinstance(corner, tuple)
    assert red[0] > 200 and red[1] < 80 and red[2] < 80
    assert grey[0] == grey[1] == grey[2]
    assert corner[3] == 0  # transparent corners


def _entry(entries: list[Any], label: str) -> Any:
    return next(entry for entry in entries if entry.label == label)


def test_tray_menu_actions_go_through_the_socket(
    client: ControlClient, gate: CaptureGate, markers: Markers
) -> None:
    told = Told()
    opened: list[str] = []
    actions = TrayActions(
        client,
        "https://portal.example/me",
        ask_task_text=lambda: "File expenses",
        open_url=opened.append,
        tell=told,
    )
    entries = menu_entries(actions)
    _entry(entries, "Pause 5 min").action()
    assert gate.state.paused_until is not None
    assert client.status()["remaining_seconds"] == pytest.approx(300, abs=5)
    _entry(entries, "Status").action()
    assert told.messages[-1][1].startswith("Paused")
    _entry(entries, "Resume").action()
    assert gate.state.paused_until is None
    _entry(entries, "Start task…").action()
    _entry(entries, "End task").action()
    assert markers.seen == [("task_start", "File expenses"), ("task_end", "")]
    _entry(entries, "Open portal").action()
    assert opened == ["https://portal.example/me"]


def test_tray_reports_problems_instead_of_crashing(short_dir: Path) -> None:
    told = Told()
    actions = TrayActions(ControlClient(short_dir / "none.sock"), None, tell=told)
    entries = menu_entries(actions)
    _entry(entries, "Pause 15 min").action()
    assert told.messages == [("Cannot pause", told.messages[0][1])]
    assert "no recorder is running" in told.messages[0][1]
    assert not _entry(entries, "Open portal").enabled


def test_status_text_for_people() -> None:
    assert "Exempt" in status_text({"state": "exempt"})
    assert "resumes in 5 min" in status_text({"state": "paused", "remaining_seconds": 300})
    assert "3 records" in status_text({"state": "recording", "spool_pending": 3})


@pytest.fixture
def pystray_on_desktop(desktop: VirtualDesktop, monkeypatch: pytest.MonkeyPatch) -> Any:
    # pystray picks its backend and opens $DISPLAY when first imported.
    monkeypatch.setenv("DISPLAY", desktop.display)
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    import pystray  # type: ignore[import-untyped]

    return pystray


@pytest.mark.x11
def test_pystray_menu_items_call_the_socket(
    pystray_on_desktop: Any, client: ControlClient, gate: CaptureGate
) -> None:
    actions = TrayActions(client, None, tell=Told())
    menu = build_menu(menu_entries(actions))
    items = {item.text: item for item in menu.items}
    assert set(items) >= {"Pause 5 min", "Pause 15 min", "Pause 30 min", "Resume", "Status", "Start task…"}
    items["Pause 30 min"](None)
    assert client.status()["remaining_seconds"] == pytest.approx(1800, abs=5)
    items["Resume"](None)
    assert gate.state.paused_until is None
    menu(None)  # a click on the icon runs the default item: pause for the policy's default
    assert client.status()["remaining_seconds"] == pytest.approx(15 * 60, abs=5)


@pytest.mark.x11
def test_the_tray_starts_and_docks_its_icon(desktop: VirtualDesktop, server: ControlServer) -> None:
    from Xlib import X, display
    from Xlib.protocol import event as xevent

    # A minimal system tray host (freedesktop systray spec): own _NET_SYSTEM_TRAY_S0, hear dock requests.
    host = display.Display(desktop.display)
    screen = host.screen()
    selection = host.intern_atom(f"_NET_SYSTEM_TRAY_S{host.get_default_screen()}")
    opcode = host.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
    tray_window = screen.root.create_window(0, 0, 1, 1, 0, screen.root_depth)
    tray_window.set_selection_owner(selection, X.CurrentTime)
    host.flush()
    if host.get_selection_owner(selection) != tray_window:
        pytest.skip("no tray host could be set up on the Xvfb display")

    # The real tray, in its own process as `demotrace tray` runs it, with pystray's xorg backend.
    tray = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from demotrace.device.tray import run_tray; "
            "run_tray(Path(sys.argv[1]))",
            str(server.path),
        ],
        env={**desktop.env(), "PYSTRAY_BACKEND": "xorg"},
        stderr=subprocess.PIPE,
    )
    docked: list[int] = []

    def listen() -> None:
        while not docked:
            received = host.next_event()
            if isinstance(received, xevent.ClientMessage) and received.client_type == opcode:
                docked.append(received.data[1][2])

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listener.join(60)
    still_running = tray.poll() is None
    tray.terminate()
    _, stderr = tray.communicate(timeout=30)
    host.close()
    assert still_running, f"the tray exited: {stderr.decode()[-2000:]}"
    assert docked, "the tray never asked the tray host to dock its icon"
    assert docked[0] != 0  # the id of the icon's own window


# --- notifications -------------------------------------------------------------------------------------


def test_notifications_fall_back_to_a_log_line(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # no notify-send, no gdbus, no session bus
    assert channels(env) == ["log"]
    assert show("Recording paused", "until 10:15", env) == "log"


@pytest.mark.skipif(
    shutil.which("dbus-daemon") is None or shutil.which("gdbus") is None, reason="needs dbus-daemon and gdbus"
)
def test_a_session_bus_without_a_notification_service_does_not_fail(tmp_path: Path) -> None:
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().decode().strip()
        env = {"PATH": os.environ["PATH"], "DBUS_SESSION_BUS_ADDRESS": address}
        assert "dbus" in channels(env)
        assert show("Recording resumed", "", env) == "log"
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_notification_text_is_quoted_for_gdbus() -> None:
    assert gvariant_string("it's a \\ test") == "'it\\'s a \\\\ test'"
    command = dbus_command("Recording paused", "back at 10:15")
    assert command[:2] == ["gdbus", "call"] and "'Recording paused'" in command


def test_pause_messages() -> None:
    summary, body = pause_message("paused", START)
    assert summary == "Recording paused" and "until" in body
    assert pause_message("expired", None)[0] == "Recording resumed"


def test_status_watch_refreshes_until_ctrl_c(client: ControlClient, gate: CaptureGate) -> None:
    """`status --watch` keeps asking the recorder; Ctrl+C ends it quietly with exit 0."""
    import signal
    import time

    watch = subprocess.Popen(
        [sys.executable, "-m", "demotrace.cli", "status", "--watch", "--socket", str(client.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        gate.update_state(exempt=True)  # a change the next refresh must show
        time.sleep(2.0)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "state exempt" in " ".join(out.split()), out
