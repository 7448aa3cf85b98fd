"""`demotrace up` stopped the ways a user stops it: Ctrl+C in its terminal, SIGTERM from a supervisor.

Nothing recorded may be lost, nothing may print a traceback and no process of ours may be left running.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import free_port
from demotrace.demo.script import TERMINAL_ARGV, TERMINAL_CLASS, find_window
from demotrace.demo.xdriver import XDriver

pytestmark = pytest.mark.x11


@dataclass
class Up:
    process: subprocess.Popen[str]
    home: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def spool(self) -> Path:
        return self.home / "data" / "demotrace" / "spool"

    @property
    def collector(self) -> Path:
        return self.home / "data" / "demotrace" / "collector"

    @property
    def key(self) -> Path:
        return self.home / "config" / "demotrace" / "spool.key"

    def output(self) -> str:
        return "\n".join(self.lines)


def user_env(home: Path, display: str) -> dict[str, str]:
    dirs = {"XDG_DATA_HOME": "data", "XDG_CONFIG_HOME": "config", "XDG_STATE_HOME": "state"}
    env = {**os.environ, "HOME": str(home), "DISPLAY": display, "XDG_RUNTIME_DIR": str(home / "run")}
    for name, folder in dirs.items():
        env[name] = str(home / folder)
    (home / "run").mkdir(parents=True, mode=0o700)
    return env


def user_env_of(up: Up, display: str) -> dict[str, str]:
    """The environment of the user running ``up`` (for a second command in the same session)."""
    env = user_env(up.home / "other-session", display)
    env.update(HOME=str(up.home), XDG_RUNTIME_DIR=str(up.home / "run"))
    for name, folder in {
        "XDG_DATA_HOME": "data",
        "XDG_CONFIG_HOME": "config",
        "XDG_STATE_HOME": "state",
    }.items():
        env[name] = str(up.home / folder)
    return env


def start_up(home: Path, display: str) -> Up:
    """`demotrace up` in a session of its own, as a terminal runs it (it leads its process group), once
    the person has accepted the notice (`demotrace notice --accept`, before `up`: no recorder runs yet)."""
    env = user_env(home, display)
    accepted = subprocess.run(
        [sys.executable, "-m", "demotrace.cli", "notice", "--accept"], env=env, capture_output=True, text=True
    )
    assert accepted.returncode == 0 and "Accepted" in accepted.stdout, accepted.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "demotrace.cli", "up", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    up = Up(process, home)

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            up.lines.append(line.rstrip("\n"))
            if "demotrace: recording" in line:
                up.ready.set()
        up.ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not up.ready.wait(60) or process.poll() is not None:
        process.kill()
        pytest.fail(f"up did not start:\n{up.output()}")
    return up


@pytest.fixture()
def terminal(desktop: VirtualDesktop) -> Iterator[None]:
    xterm = desktop.spawn(TERMINAL_ARGV)
    deadline = time.monotonic() + 20
    while find_window(desktop.display, TERMINAL_CLASS) is None:
        assert time.monotonic() < deadline, "the xterm did not map"
        time.sleep(0.1)
    yield
    xterm.terminate()
    xterm.wait(10)


def work_in_the_terminal(display: str, rounds: int) -> None:
    with XDriver(display, seed=3) as driver:
        for index in range(rounds):
            driver.click(1200, 300 + 20 * index)
            driver.type_text(f"echo step {index}")
            driver.press("Return")


def our_processes(up: Up) -> list[psutil.Process]:
    """`up` and everything it started (the collector, the recorder, the recorder's OCR worker)."""
    root = psutil.Process(up.process.pid)
    return [root, *root.children(recursive=True)]


def assert_all_gone(processes: list[psutil.Process]) -> None:
    deadline = time.monotonic() + 10
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [process for process in processes if _running(process)]
        time.sleep(0.1)
    assert not alive, f"left running: {[(p.pid, p.cmdline()) for p in alive]}"


def _running(process: psutil.Process) -> bool:
    try:  # is_running() compares the creation time: a reused pid is not ours
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def steps_built(records: Iterator[object], load_frame: object, out: Path) -> int:
    from demotrace.dataset.build import build_dataset

    summary = build_dataset(records, load_frame, out, formats=["agentnet"])  # type: ignore[arg-type]
    return summary.steps


def assert_nothing_lost(up: Up, tmp_path: Path, output: str) -> None:
    """Everything the recorder wrote reached the collector (uploaded records leave the spool), and the
    dataset built from the collector has every round of work, the last one included."""
    from demotrace.collector.reader import CollectorReader
    from demotrace.device.spool import open_spool

    spool = open_spool(up.spool, up.key)
    try:
        assert spool.pending_count() == 0, "records were left in the spool, not uploaded"
    finally:
        spool.close()
    sent = re.search(r"uploaded (\d+) records", output)
    assert sent is not None, output
    out = tmp_path / "from-server"
    with CollectorReader(up.collector) as reader:
        assert sum(1 for _ in reader.rows()) == int(sent.group(1)), output
        steps = steps_built(reader.iter_batches(), reader.load_frame, out)
    typed = (out / "trajectories.jsonl").read_text()
    assert steps >= 6, output  # 3 rounds of click, type, Return
    assert all(f"echo step {index}" in typed for index in range(3)), typed


def stop_and_check(up: Up, sending: object, tmp_path: Path) -> str:
    processes = our_processes(up)
    names = " ".join(" ".join(process.cmdline()) for process in processes)
    assert "server" in names and "demotrace.device.agent" in names, names
    if sending == "group":
        os.killpg(up.process.pid, signal.SIGINT)  # what a terminal does on Ctrl+C
    else:
        up.process.send_signal(signal.SIGTERM)  # what a supervisor does, to `up` alone
    code = up.process.wait(timeout=150)
    output = up.output()
    assert code == 0, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert_all_gone(processes)
    assert_nothing_lost(up, tmp_path, output)
    return output


def test_ctrl_c_to_the_whole_group_keeps_every_step(
    tmp_path: Path, desktop: VirtualDesktop, terminal: None
) -> None:
    up = start_up(tmp_path / "home", desktop.display)
    work_in_the_terminal(desktop.display, rounds=3)
    status = subprocess.run(
        [sys.executable, "-m", "demotrace.cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=user_env_of(up, desktop.display),
    )
    assert status.returncode == 0, status.stderr
    shown = " ".join(status.stdout.split())
    assert "state recording" in shown and str(up.spool) in status.stdout.replace("\n", "").replace(" ", "")
    assert "waiting to upload" in shown and "uploaded today" in shown and "of 100 MB" in shown
    output = stop_and_check(up, "group", tmp_path)  # at once, mid-session
    assert f"demotrace build --from-server {up.collector} --out dataset" in output


def test_sigterm_to_up_alone_stops_everything_in_order(
    tmp_path: Path, desktop: VirtualDesktop, terminal: None
) -> None:
    up = start_up(tmp_path / "home", desktop.display)
    work_in_the_terminal(desktop.display, rounds=3)
    stop_and_check(up, "up", tmp_path)


def test_up_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "demotrace.cli", "up", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=user_env(tmp_path, ":0"),
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} is already in use (Address already in use): another collector or program "
        "listens there; choose a free one with --port"
    ]
    assert "build a dataset" not in result.stdout + result.stderr
