"""The main job: a whole recording on a virtual desktop, from injected input to a built dataset.

Every part runs for real and as it would in the field: the collector and the recorder are separate
processes started through the `demotrace` command, talking HTTP on loopback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from demotrace.demo.compare import Comparison, as_redacted, compare_actions
from demotrace.device.control_protocol import SOCKET_NAME
from demotrace.model import Action
from demotrace.policy import DEFAULT_FLEET_POLICY, CapturePolicy
from demotrace.protocol import ADMIN_POLICY_PATH, HEALTH_PATH

RECORDER_READY_LINE = "recording"
RECORDER_SETTLE_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demotrace_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "demotrace.cli", *args]


@dataclass
class ProcessOutput:
    """Drains a child's stderr on a thread so the child never blocks on a full pipe."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    ready_text: str = ""

    def start(self) -> ProcessOutput:
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if self.ready_text and self.ready_text in line:
                self.ready.set()
        self.ready.set()  # the child exited: whoever waits must look at returncode

    def text(self) -> str:
        return "\n".join(self.lines)


def start_collector(
    data: Path, port: int, admin_token: str | None = None, popen_options: dict[str, Any] | None = None
) -> tuple[subprocess.Popen[str], ProcessOutput]:
    """``demotrace server`` on loopback, once it answers; ``popen_options`` go to ``subprocess.Popen``."""
    process = subprocess.Popen(
        demotrace_command("server", "--data", str(data), "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DEMOTRACE_ADMIN_TOKEN": admin_token or ""},
        **(popen_options or {}),
    )
    output = ProcessOutput(process).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}{HEALTH_PATH}", timeout=1).status_code == 200:
                return process, output
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            output.ready.wait(5)  # its last lines say why
            raise RuntimeError(f"collector did not start:\n{output.text()}")
        time.sleep(0.1)


def demo_fleet_policy() -> CapturePolicy:
    """The fleet default, plus our two demo apps: what an admin would allow for this pilot."""
    return msgspec.structs.replace(
        DEFAULT_FLEET_POLICY, allow_apps=[*DEFAULT_FLEET_POLICY.allow_apps, "DemoForm", "DemoTerm"]
    )


def set_fleet_policy(url: str, admin_token: str, policy: CapturePolicy) -> None:
    from demotrace.collector.exemptions import render_policy_toml

    response = httpx.put(
        f"{url}{ADMIN_POLICY_PATH}",
        content=render_policy_toml(policy).encode(),
        headers={"Authorization": f"Bearer {admin_token}"},
        # The demo is its own admin: it means the policy it sets, wider than the default or not.
        params={"confirm_widening": "true"},
        timeout=10,
    )
    response.raise_for_status()


def start_collector_with_policy(
    data: Path, port: int, policy: CapturePolicy, popen_options: dict[str, Any] | None = None
) -> tuple[subprocess.Popen[str], ProcessOutput, str]:
    """A collector whose fleet policy is set through its admin API, as an admin would; returns its URL."""
    admin_token = secrets.token_urlsafe(24)
    collector, output = start_collector(data, port, admin_token, popen_options)
    url = f"http://127.0.0.1:{port}"
    try:
        set_fleet_policy(url, admin_token, policy)
    except httpx.HTTPError:
        stop_process(collector)
        raise
    return collector, output, url


def user_dirs(home: Path) -> dict[str, str]:
    """XDG folders of a demo "user" under ``home``: its own control socket, pause state and config,
    so a demo or a test never touches (or is paused by) the real user's recorder."""
    dirs = {
        "XDG_RUNTIME_DIR": home / "run",
        "XDG_STATE_HOME": home / "state",
        "XDG_CONFIG_HOME": home / "config",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {name: str(path) for name, path in dirs.items()}


def start_recorder(
    display: str,
    spool: Path,
    key: Path,
    credentials: Path,
    server_url: str | None,
    *,
    home: Path | None = None,
    wait: bool = True,
    accept_notice: bool,
    prefix: Sequence[str] = (),
) -> tuple[subprocess.Popen[str], ProcessOutput]:
    """`demotrace record` as its own process, once it records (RuntimeError if it does not start);
    with ``wait=False`` at once (``output.ready`` is set when it records: fault injection). ``prefix``
    is a command that runs it and execs it in place (a benchmark's namespace, for one).

    With ``accept_notice`` the notice of the policy in force is accepted through the recorder's control
    socket, as `demotrace notice --accept` does, as soon as the recorder runs (a scripted person);
    without, it records nothing until someone accepts it.

    Its XDG folders (control socket, pause state, config) are under ``home``, by default the spool's
    parent folder."""
    args = ["record", "--spool", str(spool), "--key", str(key), "--credentials", str(credentials)]
    if server_url:
        args += ["--server", server_url]
    process = subprocess.Popen(
        [*prefix, *demotrace_command(*args)],
        env={**os.environ, **user_dirs(home or spool.parent), "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = ProcessOutput(process, ready_text=RECORDER_READY_LINE).start()
    socket_path = Path(user_dirs(home or spool.parent)["XDG_RUNTIME_DIR"]) / "demotrace" / SOCKET_NAME
    if not wait:
        if accept_notice:
            threading.Thread(target=accept_when_ready, args=(output, socket_path), daemon=True).start()
        return process, output
    if not output.ready.wait(30) or process.poll() is not None:
        process.kill()
        raise RuntimeError(f"recorder did not start:\n{output.text()}")
    if accept_notice:
        accept_notice_now(socket_path)
    return process, output


def accept_notice_now(socket_path: Path) -> None:
    """Accept the notice the recorder on ``socket_path`` shows (the digest it gives, as a person would)."""
    from demotrace.device.control_client import ControlClient

    client = ControlClient(socket_path)
    shown = client.request("notice")
    answer = client.request("accept_notice", digest=shown["digest"])
    if not answer.get("ok"):
        raise RuntimeError(f"the recorder refused the notice acceptance: {answer.get('error')}")


def accept_when_ready(output: ProcessOutput, socket_path: Path) -> None:
    from demotrace.device.control_protocol import ControlError

    output.ready.wait()
    with contextlib.suppress(ControlError, RuntimeError):  # it may be killed on purpose meanwhile
        accept_notice_now(socket_path)


def stop_process(process: subprocess.Popen[str], timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


@dataclass
class DemoResult:
    injected: list[Action]
    captured: list[Action]
    comparison: Comparison
    dataset: Path
    recorder_exit: int
    spool_bytes: int
    uploaded_bytes: int
    frames: int
    steps: int
    steps_with_frame: int
    seconds: float


def record_scripted_session(
    out: Path, *, seconds: float | None, seed: int, console: Console | None = None
) -> DemoResult:
    """Desktop, apps, collector, recorder, scripted input, stop, build: everything the demo does."""
    from demotrace.collector.reader import CollectorReader
    from demotrace.dataset.build import build_dataset
    from demotrace.dataset.load import load_actions
    from demotrace.demo.desktop import VirtualDesktop
    from demotrace.demo.script import run_scripted_session, start_demo_apps

    def say(message: str) -> None:
        if console is not None:
            console.print(message)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    spool, key, credentials = out / "spool", out / "spool.key", out / "device.json"
    collector_data, dataset = out / "collector", out / "dataset"
    port = free_port()
    started = time.monotonic()
    with VirtualDesktop() as desktop:
        say(f"virtual desktop on {desktop.display} (1920x1080, openbox)")
        start_demo_apps(desktop, out / "app-state.json")
        collector, collector_output, url = start_collector_with_policy(
            collector_data, port, demo_fleet_policy()
        )
        try:
            say(f"collector on {url}, data in {collector_data}; fleet policy allows DemoForm and DemoTerm")
            # The demo's person accepts the notice, scripted, once the recorder shows it.
            recorder, recorder_output = start_recorder(
                desktop.display, spool, key, credentials, url, accept_notice=True
            )
            say("recorder running, notice accepted; driving the scripted session")
            injected = run_scripted_session(
                desktop.display, seed=seed, seconds=seconds, app_state_file=out / "app-state.json"
            )
            # The last release is in the X server's queue when the driver returns; give the recorder's
            # RECORD connection a moment to deliver it before we ask it to stop, as a person would.
            time.sleep(RECORDER_SETTLE_SECONDS)
            recorder_exit = stop_process(recorder)
            say(f"recorder stopped (exit {recorder_exit})")
            if recorder_exit != 0:
                say(recorder_output.text())
            reader = CollectorReader(collector_data)
            summary = build_dataset(reader.iter_batches(), reader.load_frame, dataset)
        finally:
            stop_process(collector)
            del collector_output
    captured = load_actions(dataset / "trajectories.jsonl")
    uploaded = _uploaded_bytes(recorder_output.lines)
    return DemoResult(
        injected=injected,
        captured=captured,
        comparison=compare_actions(as_redacted(injected), captured),
        dataset=dataset,
        recorder_exit=recorder_exit,
        spool_bytes=folder_bytes(spool),
        uploaded_bytes=uploaded,
        frames=summary.frames_written,
        steps=summary.steps,
        steps_with_frame=summary.steps - summary.steps_without_frame,
        seconds=time.monotonic() - started,
    )


def _uploaded_bytes(recorder_lines: list[str]) -> int:
    for line in recorder_lines:
        if line.startswith("uploaded "):
            return int(line.split()[3])
    return 0


def print_demo_summary(result: DemoResult, console: Console) -> None:
    table = Table(title="actions: injected vs captured")
    table.add_column("action")
    table.add_column("injected", justify="right")
    table.add_column("captured", justify="right")
    table.add_column("matched", justify="right")
    kinds = sorted(set(result.comparison.injected) | set(result.comparison.captured))
    for kind in kinds:
        table.add_row(
            kind,
            str(result.comparison.injected[kind]),
            str(result.comparison.captured[kind]),
            str(result.comparison.matched[kind]),
        )
    console.print(table)
    for problem in result.comparison.problems:
        console.print(f"[yellow]  {problem}[/]")
    console.print(
        f"steps {result.steps}, with a pre-action frame {result.steps_with_frame}, frames {result.frames}\n"
        f"spool {result.spool_bytes:,} bytes on disk, uploaded {result.uploaded_bytes:,} bytes\n"
        f"dataset: {result.dataset / 'trajectories.jsonl'}\n"
        f"step-by-step view: {(result.dataset / 'index.html').resolve()}"
    )


def run_demo(out: Path, *, seconds: float, seed: int, console: Console) -> int:
    result = record_scripted_session(out, seconds=seconds, seed=seed, console=console)
    print_demo_summary(result, console)
    ok = result.recorder_exit == 0 and result.comparison.perfect and result.steps == result.steps_with_frame
    console.print("[bold green]demo ok[/]" if ok else "[bold red]demo found differences[/]")
    return 0 if ok else 1
