"""A person's real recorder for the portal tests: `demotrace record --server` as its own process on Xvfb,
enrolled for a person, the notice accepted, and the control client to ask it its state."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import ProcessOutput, start_recorder, stop_process
from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import SOCKET_NAME
from demotrace.device.enrollment import enroll, save_credentials


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_person_recorder(
    folder: Path, desktop: VirtualDesktop, server_url: str, device_name: str, person_id: str
) -> tuple[subprocess.Popen[str], ProcessOutput, ControlClient]:
    """Enroll a device for ``person_id`` and start its recorder (files under ``folder``), once recording."""
    credentials = save_credentials(
        enroll(server_url, device_name, person_id=person_id), folder / "device.json"
    )
    home = folder / "home"
    recorder, output = start_recorder(
        desktop.display,
        folder / "spool",
        folder / "spool.key",
        credentials,
        server_url,
        home=home,
        accept_notice=True,
    )
    control = ControlClient(home / "run" / "demotrace" / SOCKET_NAME)
    try:
        wait_for(lambda: control.status()["state"] == "recording", "the recorder to record")
    except BaseException:
        stop_process(recorder)
        raise
    return recorder, output, control
