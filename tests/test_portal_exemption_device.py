"""The exemption flow end to end, as the people involved do it: an employee asks on the portal in
Chromium, an admin approves it on the portal, and the person's real recorder (`demotrace record
--server`, its own process on Xvfb) stops recording at its next policy refresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from person_recorder import start_person_recorder, wait_for
from playwright.sync_api import Browser, expect
from portal_support import PortalCollector, make_portal_app, sign_in

from demotrace.collector.exemptions import render_policy_toml
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import stop_process
from demotrace.policy import DEFAULT_FLEET_POLICY

pytestmark = pytest.mark.x11

REFRESH_SECONDS = 2.0


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
    recorder, output, control = start_person_recorder(
        tmp_path, desktop, portal.url, "erin-workstation", "p-erin"
    )
    try:
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
