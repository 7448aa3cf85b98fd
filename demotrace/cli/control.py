"""Employee controls on the command line: pause, resume, status, task markers and the tray icon.

Registered on the main app by ``register_control_commands(app)`` (demotrace/cli/main.py). Every command
talks to the running recorder through its control socket.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from demotrace.cli.shared import console, fail, stderr

SocketOption = Annotated[
    Path | None,
    typer.Option(
        "--socket",
        envvar="DEMOTRACE_CONTROL_SOCKET",
        help="Control socket of the recorder (default: $XDG_RUNTIME_DIR/demotrace/control.sock).",
    ),
]

task_app = typer.Typer(help="Mark where a task starts and ends in the recording.", no_args_is_help=True)


def _client(socket_path: Path | None) -> Any:
    from demotrace.device.control_client import ControlClient

    return ControlClient(socket_path)


def _call(socket_path: Path | None, cmd: str, **fields: Any) -> dict[str, Any]:
    """One request; a missing recorder or a refusal exits non-zero with the reason."""
    from demotrace.device.control_protocol import ControlError, RecorderNotRunning

    try:
        answer: dict[str, Any] = _client(socket_path).request(cmd, **fields)
    except RecorderNotRunning as error:
        raise fail(str(error), 3) from error
    except ControlError as error:
        raise fail(str(error)) from error
    return answer


def _clock(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S")


def pause(
    duration: Annotated[
        str | None,
        typer.Argument(help="How long, like 15m, 30m, 90s or 1h (default: the policy's default)."),
    ] = None,
    socket_path: SocketOption = None,
) -> None:
    """Pause recording; it resumes by itself when the time is up (at most the policy's maximum)."""
    from demotrace.device.control_protocol import ControlError
    from demotrace.device.pause import parse_duration

    minutes = None
    if duration is not None:
        try:
            minutes = parse_duration(duration)
        except ControlError as error:
            raise fail(str(error)) from error
    answer = _call(socket_path, "pause", minutes=minutes)
    if answer.get("capped"):
        stderr.print(f"[yellow]note:[/] {answer['message']}")
    console.print(
        f"Recording paused for {answer['minutes']:g} minutes, until {_clock(answer['paused_until'])}."
    )


def resume(socket_path: SocketOption = None) -> None:
    """Resume recording now."""
    _call(socket_path, "resume")
    console.print("Recording resumed.")


def status(socket_path: SocketOption = None) -> None:
    """Show whether the recorder records, is paused or exempt, and what waits to upload."""
    answer = _call(socket_path, "status")
    state = answer.get("state", "unknown")
    colour = {"recording": "red", "paused": "yellow", "exempt": "green"}.get(state, "white")
    table = Table(show_header=False, box=None)
    table.add_row("state", f"[bold {colour}]{state}[/]")
    if answer.get("paused_until"):
        remaining = float(answer.get("remaining_seconds") or 0)
        table.add_row("paused until", f"{_clock(answer['paused_until'])} ({remaining / 60:.1f} min left)")
    table.add_row("policy", str(answer.get("policy_mode")))
    table.add_row(
        "pause",
        f"default {answer.get('pause_default_minutes'):g} min, max {answer.get('pause_max_minutes'):g} min",
    )
    if "spool_pending" in answer:
        table.add_row("waiting to upload", str(answer["spool_pending"]))
    problems = health_problems(answer)
    if problems:
        table.add_row("[bold yellow]problem[/]", "; ".join(problems))
    console.print(table)


def health_problems(answer: dict[str, Any]) -> list[str]:
    """What is wrong with the recorder, in words, from its status answer (empty: nothing)."""
    problems = []
    if answer.get("upload_error"):
        problems.append(f"uploads failing: {answer['upload_error']}")
    if answer.get("disk_full"):
        problems.append("the disk is full: frames are being dropped, events are kept")
    if answer.get("frames_dropped"):
        problems.append(
            f"{answer['frames_dropped']} frames dropped for room "
            f"({answer.get('frames_dropped_quota', 0)} spool quota, "
            f"{answer.get('frames_dropped_disk_full', 0)} full disk)"
        )
    return problems


@task_app.command("start")
def task_start(
    text: Annotated[str, typer.Argument(help="What the task is, in a few words.")],
    socket_path: SocketOption = None,
) -> None:
    """Mark the start of a task (its text becomes the trajectory's instruction)."""
    answer = _call(socket_path, "task_start", text=text)
    console.print(f"Task started: {answer.get('text', text)}")


@task_app.command("end")
def task_end(socket_path: SocketOption = None) -> None:
    """Mark the end of the current task."""
    _call(socket_path, "task_end")
    console.print("Task ended.")


def tray(
    socket_path: SocketOption = None,
    portal: Annotated[
        str | None, typer.Option("--portal", envvar="DEMOTRACE_PORTAL_URL", help="Portal URL to open.")
    ] = None,
) -> None:
    """Show the tray icon (red: recording, grey: paused) with pause, resume, status and task items."""
    from demotrace.device.tray import run_tray

    try:
        run_tray(socket_path, portal)
    except Exception as error:  # pystray raises plain exceptions when there is no display or tray
        raise fail(f"cannot show a tray icon: {error}", 3) from error


def register_control_commands(app: typer.Typer) -> None:
    """Add pause, resume, status, task and tray to the main ``demotrace`` command."""
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("status")(status)
    app.add_typer(task_app, name="task")
    app.command("tray")(tray)
