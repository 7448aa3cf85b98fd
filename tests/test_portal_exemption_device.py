"""The exemption flow end to end, as the people involved do it: an employee asks on the portal in
Chromium, an admin approves it on the portal, and the person's real recorder (`demotrace record
--server`, its own process on Xvfb) stops recording at its next policy refresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from playwright.sync_api import Browser, expect
from portal_support import PortalCollector, make_portal_app, sign_in

from demotrace.collector.exemptions import render_policy_toml
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import start_recorder, stop_process
from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import SOCKET_NAME
from demotrace.device.enrollment import enroll, save_credentials
from demotrace.policy import DEFAULT_FLEET_POLICY

pytestmark = pytest.mark.x11

REFRESH_SECONDS = 2.0


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def quick_portal(tmp_path: Path) -> Iterator[PortalCollector]:
    """The portal collector, its devices asking for the policy every 2 s rather than every minute."""
    collector = make_portal_app(tmp_path / "collector")
    quick = msgspec.structs.replace(DEFAULT_FLEET_POLICY, refresh_seconds=REFRESH_SECONDS)
    collector.app.state.exemptions.set_fleet_policy(render_policy_toml(quick).encode(), "test")
    with ServerThread(collector.app) as server:
        collector.url = server.url
        yield collector


def test_an_exemption_asked_and_approved_on_the_portal_stops_the_real_recorder(
    tmp_path: Path, desktop: VirtualDesktop, quick_portal: PortalCollector, chromium_browser: Browser
) -> None:
    portal = quick_portal
    credentials = save_credentials(
        enroll(portal.url, "erin-workstation", person_id="p-erin"), tmp_path / "device.json"
    )
    home = tmp_path / "home"
    recorder, output = start_recorder(
        desktop.display,
        tmp_path / "spool",
        tmp_path / "spool.key",
        credentials,
        portal.url,
        home=home,
        accept_notice=True,
    )
    control = ControlClient(home / "run" / "demotrace" / SOCKET_NAME)
    try:
        wait_for(lambda: control.status()["state"] == "recording", "the recorder to record", 60)

        employee = chromium_browser.new_context().new_page()
        sign_in(employee, portal, "erin", next_path="/me/exemption")
        employee.get_by_label("Why?").fill("I handle HR cases all day")
        employee.get_by_role("button", name="Send my request").click()
        expect(employee.locator("table.exemption-requests .pill")).to_have_text("pending")
        assert control.status()["state"] == "recording"  # asking alone changes nothing

        admin = chromium_browser.new_context().new_page()
        sign_in(admin, portal, "ada", next_path="/admin/exemptions")
        row = admin.locator("tr", has_text="I handle HR cases all day")
        row.get_by_role("button", name="Approve").click()
        expect(admin.get_by_role("status")).to_contain_text("Exemption approved")

        # At its next refresh (2 s here), with slack for a loaded machine; the default refresh is a minute.
        wait_for(lambda: control.status()["state"] == "exempt", "the recorder to stop", 30)

        employee.reload()
        expect(employee.locator("table.exemption-requests .pill")).to_have_text("approved")
        audit = portal.app.state.exemptions.audit(action="exemption_approved")
        assert [entry["actor"] for entry in audit] == ["account:ada"]
    finally:
        code = stop_process(recorder)
    assert code == 0, output.text()
