"""Employee controls on the command line: pause, resume, status, task markers and the tray icon.

Registered on the main app by ``register_control_commands(app)`` (demotrace/cli/main.py). Every command
talks to the running recorder through its control socket.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from demotrace.cli.shared import console, fail, stderr
from demotrace.wording import plural, size_text

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
    if answer.get("paused") is False:
        console.print("Nothing to pause: this device is exempt from recording, so nothing is recorded.")
        return
    if answer.get("capped"):
        stderr.print(f"[yellow]note:[/] {answer['message']}")
    console.print(
        f"Recording paused for {answer['minutes']:g} minutes, until {_clock(answer['paused_until'])}."
    )


def resume(socket_path: SocketOption = None) -> None:
    """Resume recording now."""
    answer = _call(socket_path, "resume")
    if answer.get("state") == "exempt":
        console.print("Nothing to resume: this device is exempt from recording, so nothing is recorded.")
    elif answer.get("was_paused") is False:
        console.print("Recording was not paused: nothing changed.")
    else:
        console.print("Recording resumed.")


def upload_line(answer: dict[str, Any]) -> str:
    """What waits to upload, why, and when it goes: one line for `status`."""
    pending = answer.get("spool_pending")
    if pending is None:
        return f"unknown ({answer.get('spool_error', 'the spool did not answer')})"
    records = plural(pending, "record")
    if not answer.get("uploads", True):
        return f"{records}, kept on this device (no collector: nothing is uploaded)"
    if pending == 0:
        return "nothing"
    wait = answer.get("upload_wait")
    if not wait:
        return f"{records}, uploading now"
    next_try = answer.get("upload_next_try")
    when = (
        f"; next try at {_clock(next_try)}" if next_try is not None else "; they go as soon as that changes"
    )
    return f"{records}: {wait}{when}"


def upload_bar(sent: int, cap: int) -> Table:
    """Today's uploads against the daily cap, as a bar and in MB."""
    from rich.progress_bar import ProgressBar

    row = Table.grid(padding=(0, 1))
    row.add_row(
        ProgressBar(total=cap, completed=min(sent, cap), width=20), f"{sent / 1e6:.1f} of {cap / 1e6:g} MB"
    )
    return row


def upload_progress_row(progress: dict[str, Any]) -> tuple[str, Table | str] | None:
    """The upload under way (records and bytes of this burst, and of a large record in chunks), or the
    last one, as one `status` row; None before anything was sent."""
    from rich.progress_bar import ProgressBar

    if progress.get("started") is None:
        return None
    sent, total = int(progress["records_sent"]), int(progress["records_total"])
    megabytes = size_text(int(progress["bytes_sent"]))
    if not progress.get("active"):
        ended = progress.get("ended") or progress["started"]
        return "last upload", f"{plural(sent, 'record')}, {megabytes}, ended at {_clock(ended)}"
    row = Table.grid(padding=(0, 1))
    words = f"{sent} of {plural(total, 'record')} sent ({megabytes}), since {_clock(progress['started'])}"
    row.add_row(ProgressBar(total=max(total, 1), completed=sent, width=20), words)
    record_total = int(progress.get("record_bytes_total") or 0)
    if record_total > 1e6:  # a large record going in chunks: its own bar, or it looks stuck
        record_sent = min(int(progress["record_bytes_sent"]), record_total)
        row.add_row(
            ProgressBar(total=record_total, completed=record_sent, width=20),
            f"this record: {record_sent / 1e6:.1f} of {record_total / 1e6:.1f} MB",
        )
    return "uploading", row


def status_table(answer: dict[str, Any]) -> Table:
    """Everything `status` shows, from the recorder's status answer."""
    state = answer.get("state", "unknown")
    colour = {"recording": "red", "paused": "yellow", "exempt": "green"}.get(state, "white")
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # wrapped, never cut: a path is there to be copied
    table.add_row("state", f"[bold {colour}]{state}[/]")
    if state == "awaiting notice":
        table.add_row(
            "notice", "not accepted: read it with `demotrace notice`, then `demotrace notice --accept`"
        )
    if answer.get("paused_until"):
        remaining = float(answer.get("remaining_seconds") or 0)
        table.add_row("paused until", f"{_clock(answer['paused_until'])} ({remaining / 60:.1f} min left)")
    if answer.get("task"):
        table.add_row("task", escape(str(answer["task"])))
    table.add_row("policy", str(answer.get("policy_mode")))
    table.add_row(
        "pause",
        f"default {answer.get('pause_default_minutes'):g} min, max {answer.get('pause_max_minutes'):g} min",
    )
    progress = upload_progress_row(answer.get("upload_progress") or {})
    if progress is not None:
        table.add_row(*progress)
    if "spool_pending" in answer:
        table.add_row("waiting to upload", escape(upload_line(answer)))
    if answer.get("daily_cap_bytes"):
        table.add_row("uploaded today", upload_bar(answer["uploaded_today_bytes"], answer["daily_cap_bytes"]))
    if answer.get("spool"):
        table.add_row("spool", escape(str(answer["spool"])))
    problems = health_problems(answer)
    if problems:
        table.add_row("[bold yellow]problem[/]", "; ".join(problems))
    return table


def status(
    socket_path: SocketOption = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Keep the status on screen, refreshed every second, until Ctrl+C."
        ),
    ] = False,
) -> None:
    """Show whether the recorder records, is paused or exempt, the open task, the upload under way, and why
    uploads wait."""
    if not watch:
        console.print(status_table(_call(socket_path, "status")))
        return
    import time

    from rich.live import Live

    try:
        with Live(status_table(_call(socket_path, "status")), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(1.0)
                live.update(status_table(_call(socket_path, "status")), refresh=True)
    except KeyboardInterrupt:
        return


def health_problems(answer: dict[str, Any]) -> list[str]:
    """What is wrong with the recorder, in words, from its status answer (empty: nothing)."""
    problems = []
    if answer.get("upload_error"):
        problems.append(f"uploads failing: {answer['upload_error']}")
    if answer.get("disk_full"):
        problems.append("the disk is full: frames are being dropped, events are kept")
    if answer.get("frames_dropped"):
        problems.append(
            f"{plural(answer['frames_dropped'], 'frame')} dropped for room "
            f"({answer.get('frames_dropped_quota', 0)} spool quota, "
            f"{answer.get('frames_dropped_disk_full', 0)} full disk)"
        )
    return problems


@task_app.command("start")
def task_start(
    text: Annotated[str, typer.Argument(help="What the task is, in a few words.")],
    socket_path: SocketOption = None,
) -> None:
    """Mark the start of a task (its text becomes the trajectory's instruction); ends an open one."""
    if not text.strip():
        raise fail('a task needs a description: demotrace task start "what you are about to do"')
    answer = _call(socket_path, "task_start", text=text)
    console.print(f"Task started: {escape(str(answer.get('text', text)))}")
    if answer.get("ended"):
        console.print(f"(the open task ended first: {escape(str(answer['ended']))})")


@task_app.command("end")
def task_end(socket_path: SocketOption = None) -> None:
    """Mark the end of the current task."""
    answer = _call(socket_path, "task_end")
    if answer.get("ended"):
        console.print(f"Task ended: {escape(str(answer['ended']))}")
    else:
        console.print("No task was open: nothing to end.")


def tray(
    socket_path: SocketOption = None,
    portal: Annotated[
        str | None,
        typer.Option("--portal", metavar="URL", envvar="DEMOTRACE_PORTAL_URL", help="Portal URL to open."),
    ] = None,
) -> None:
    """Show the tray icon (red: recording, grey: paused) with pause, resume, status and task items."""
    from demotrace.device.tray import TrayUnavailable, run_tray

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise fail("no $DISPLAY: the tray icon needs a desktop session")
    try:
        run_tray(socket_path, portal)
    except TrayUnavailable as error:
        raise fail(str(error)) from error
    except Exception as error:  # pystray raises plain exceptions when it cannot reach the display
        raise fail(f"cannot show a tray icon: {type(error).__name__}: {error}") from error


def register_control_commands(app: typer.Typer) -> None:
    """Add pause, resume, status, task and tray to the main ``demotrace`` command."""
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("status")(status)
    app.add_typer(task_app, name="task")
    app.command("tray")(tray)
