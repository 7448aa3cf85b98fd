"""The first-run notice window on Xvfb: it shows the notice of the policy the running recorder has, and
pressing Accept starts recording. A screenshot of it is kept (``notice-dialog.png``) to be looked at."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mss
import mss.tools
import pytest

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import start_recorder, stop_process, user_dirs
from demotrace.device.control_client import ControlClient
from demotrace.device.notice_dialog import WINDOW_TITLE

pytestmark = pytest.mark.x11

SCREENSHOT_DIR = Path(os.environ.get("DEMOTRACE_SCREENSHOTS", "/tmp/demotrace-screenshots"))


def window_of(display: str, title: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["xdotool", "search", "--name", f"^{title}$"],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
        )
        if found.stdout.strip():
            return found.stdout.split()[0]
        time.sleep(0.2)
    raise AssertionError(f"no window titled {title!r}")


def test_the_notice_window_accepts_the_notice_it_shows(tmp_path: Path, desktop: VirtualDesktop) -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    home = tmp_path / "home"
    env = {**os.environ, **user_dirs(home), "DISPLAY": desktop.display}
    socket_path = Path(env["XDG_RUNTIME_DIR"]) / "demotrace" / "control.sock"
    recorder, output = start_recorder(
        desktop.display,
        home / "spool",
        home / "spool.key",
        home / "device.json",
        None,
        home=home,
        accept_notice=False,
    )
    dialog = None
    try:
        control = ControlClient(socket_path)
        assert control.status()["state"] == "awaiting notice"
        dialog = subprocess.Popen(
            [sys.executable, "-m", "demotrace.device.notice_dialog", "--socket", str(socket_path)], env=env
        )
        window = window_of(desktop.display, WINDOW_TITLE)
        time.sleep(1.0)  # drawn
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        with mss.MSS(display=desktop.display) as screen:
            shot = screen.grab(screen.monitors[1])
            mss.tools.to_png(shot.rgb, shot.size, output=str(SCREENSHOT_DIR / "notice-dialog.png"))
        assert control.status()["state"] == "awaiting notice"  # showing is not accepting
        xdotool = ["xdotool", "windowactivate", "--sync", window, "key", "--window", window, "space"]
        subprocess.run(xdotool, env=env, check=True, timeout=30)
        assert dialog.wait(30) == 0
        assert control.status()["state"] == "recording"
    finally:
        if dialog is not None and dialog.poll() is None:
            dialog.kill()
        assert stop_process(recorder) == 0, output.text()
