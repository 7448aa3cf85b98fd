"""A pause asked for on the portal reaches a real recorder (`demotrace record --server`, its own
process on Xvfb): the device learns it on its next policy sync, pauses through its own controller
(bounded by the policy), and reports it; the collector then shows it paused. A pause made on the device
is reported too, and a resume from the portal ends it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from person_recorder import start_person_recorder, wait_for

from demotrace.collector.app import create_app
from demotrace.collector.exemptions import render_policy_toml
from demotrace.collector.my_data import MyData
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import stop_process
from demotrace.policy import DEFAULT_FLEET_POLICY

pytestmark = pytest.mark.x11


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
    recorder, output, control = start_person_recorder(
        tmp_path, desktop, server.url, "alice-laptop", "p-alice"
    )

    def device_state() -> str:
        return str(data.devices("p-alice")[0]["state"])

    try:
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
