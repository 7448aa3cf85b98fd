"""A pause asked for on the portal reaches a real recorder (`demotrace record --server`, its own
process on Xvfb): the device learns it on its next policy sync, pauses through its own controller
(bounded by the policy), and reports it; the collector then shows it paused. A pause made on the device
is reported too, and a resume from the portal ends it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from demotrace.collector.app import create_app
from demotrace.collector.exemptions import render_policy_toml
from demotrace.collector.my_data import MyData
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import start_recorder, stop_process
from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import SOCKET_NAME
from demotrace.device.enrollment import enroll, save_credentials
from demotrace.policy import DEFAULT_FLEET_POLICY

pytestmark = pytest.mark.x11


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[ServerThread, MyData]]:
    app = create_app(tmp_path / "collector", retention_interval_s=None)
    # Devices ask every 2 s rather than every minute: the test waits for the next sync, not the clock.
    quick = msgspec.structs.replace(DEFAULT_FLEET_POLICY, refresh_seconds=2.0)
    app.state.exemptions.set_fleet_policy(render_policy_toml(quick).encode(), "test")
    with ServerThread(app) as server:
        yield server, app.state.my_data


def test_a_portal_pause_pauses_the_real_recorder_and_shows_once_reported(
    tmp_path: Path, desktop: VirtualDesktop, collector: tuple[ServerThread, MyData]
) -> None:
    server, data = collector
    credentials = save_credentials(
        enroll(server.url, "alice-laptop", person_id="p-alice"), tmp_path / "device.json"
    )
    home = tmp_path / "home"
    recorder, output = start_recorder(
        desktop.display,
        tmp_path / "spool",
        tmp_path / "spool.key",
        credentials,
        server.url,
        home=home,
        accept_notice=True,
    )
    control = ControlClient(home / "run" / "demotrace" / SOCKET_NAME)

    def device_state() -> str:
        return str(data.devices("p-alice")[0]["state"])

    try:
        wait_for(lambda: control.status()["state"] == "recording", "the recorder to record")
        asked = data.pauses.request("p-alice", "pause", 90, "person:alice")  # more than the 30 allowed
        wait_for(lambda: device_state() == "paused", "the device to report the pause")
        status = control.status()
        assert status["state"] == "paused"
        assert asked.paused_until is not None
        assert abs(status["paused_until"] - asked.paused_until) < 5  # the portal's bound, not 90 min
        [device] = data.devices("p-alice")
        assert device["waiting_for_device"] is None

        data.pauses.request("p-alice", "resume", None, "person:alice")
        wait_for(
            lambda: device_state() == "recording" and control.status()["state"] == "recording", "resume", 90
        )

        control.pause(2)  # on the device itself: reported too, times only
        wait_for(lambda: device_state() == "paused", "the device's own pause to be reported")
    finally:
        code = stop_process(recorder)
    assert code == 0, output.text()
    history = data.pauses.history("p-alice", {})
    assert [row["what"] for row in history][:4] == [
        "paused",
        "resumed (asked on the portal)",
        "asked to resume",
        "paused (asked on the portal)",
    ], history
