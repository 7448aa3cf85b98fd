"""The employee's pages in real Chromium: sign in, pause from the page and see the device paused once
it reports it, open a session and see its frames with the redaction boxes, download everything, delete
a session (gone from the collector and from the next build), ask for an exemption and see it pending.
And authorisation: an employee cannot reach anyone else's data by any URL or id."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from employee_support import REDACTED, session_records
from portal_support import PortalCollector, form_token_of, sign_in, signed_in_client
from test_collector import packed

from demotrace.collector.reader import CollectorReader
from demotrace.collector.redaction_boxes import redaction_boxes
from demotrace.dataset.build import build_dataset
from demotrace.device.enrollment import DeviceCredentials
from demotrace.device.pause import PauseController
from demotrace.device.policy_sync import PolicySync
from demotrace.device.spool import Spool
from demotrace.model import Record
from demotrace.policy import CaptureGate, WindowContext
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Screenshots of every page, kept for a person to look at (the test's own folder is removed).
SHOTS = Path(os.environ.get("DEMOTRACE_PORTAL_SHOTS", "/tmp/demotrace-portal-shots"))


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"employee-{name}.png"), full_page=True)


def upload(portal: PortalCollector, person_id: str, record: Record) -> None:
    token = portal.devices[person_id].token
    answer = httpx.put(
        f"{portal.url}/v1/records/{record_id_of(record)}",
        content=packed(record),
        headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
    )
    assert answer.status_code == 201, answer.text


@pytest.fixture
def recorded(portal: PortalCollector) -> PortalCollector:
    """Erin and Emil have each recorded one session (a click on a screen with a redaction, "hello")."""
    for person in ("p-erin", "p-emil"):
        for record in session_records(person.removeprefix("p-") + "-session"):
            upload(portal, person, record)
    return portal


@pytest.fixture
def erins_device(recorded: PortalCollector, tmp_path: Path) -> Iterator[tuple[CaptureGate, PolicySync]]:
    """Erin's device: the agent's own policy sync and pause controller, asking every half second."""
    enrollment = recorded.devices["p-erin"]
    credentials = DeviceCredentials(
        server_url=recorded.url, device_id=enrollment.device_id, token=enrollment.token
    )
    gate = CaptureGate()
    spool = Spool(tmp_path / "erin-spool", bytes(range(32)))
    sync = PolicySync(credentials, gate, spool, interval=0.5)
    controller = PauseController(gate, tmp_path / "pause.json", on_change=sync.note_pause_change)
    sync.attach_pause(controller)
    sync.start()
    yield gate, sync
    sync.stop()
    controller.close()
    spool.close()


def built_sessions(portal: PortalCollector, out: Path) -> set[str]:
    with CollectorReader(portal.data_dir) as reader:
        build_dataset(reader.iter_batches(), reader.load_frame, out, formats=["agentnet"])
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    return {json.loads(line)["session_id"] for line in lines}


def test_pause_from_the_page_and_see_the_device_paused(
    recorded: PortalCollector, erins_device: tuple[CaptureGate, PolicySync], page: Page
) -> None:
    gate, _sync = erins_device
    sign_in(page, recorded, "erin")
    assert page.url.endswith("/me")
    assert page.get_by_text("recording where allowed").is_visible()
    shot(page, "overview")
    page.get_by_label("Pause for").select_option("15")
    page.get_by_role("button", name="Pause all my devices").click()
    page.get_by_text("Pause asked: your devices").wait_for()
    # The device pauses through its own controller once its policy sync hears of it...
    for _ in range(40):
        if gate.state.paused_until is not None:
            break
        page.wait_for_timeout(250)
    assert gate.state.paused_until is not None
    assert gate.decide(WindowContext(app="libreoffice", title="report")).capture == "nothing"
    # ...and the page shows it paused once the device has reported it.
    for _ in range(40):
        page.reload()
        if page.locator("tr[data-device] .pill.warn").count():
            break
        page.wait_for_timeout(250)
    assert "paused until" in page.locator("tr[data-device] .pill").inner_text()
    assert page.locator(".device-waiting").count() == 0
    shot(page, "paused")
    page.get_by_role("link", name="My pause history").click()
    rows = page.locator("table.pause-history tbody tr").all_inner_texts()
    assert any("asked to pause" in row for row in rows) and any(
        "(asked on the portal)" in row for row in rows
    )
    shot(page, "pauses")

    page.goto(recorded.url + "/me")
    page.get_by_role("button", name="Resume now").click()
    for _ in range(40):
        if gate.state.paused_until is None:
            break
        page.wait_for_timeout(250)
    assert gate.state.paused_until is None


def test_a_session_its_frames_with_redactions_download_and_delete(
    recorded: PortalCollector, page: Page, tmp_path: Path
) -> None:
    before = built_sessions(recorded, tmp_path / "before")  # pseudonymised session ids
    assert len(before) == 2
    sign_in(page, recorded, "erin")
    page.get_by_role("link", name="All 1 session").click()
    page.get_by_role("link", name="Open").click()
    frame = page.locator("figure.frame")
    assert frame.count() == 1 and frame.get_attribute("data-boxes") == "1"
    box = frame.locator("rect.redaction")
    assert [box.get_attribute(name) for name in ("x", "y", "width", "height")] == [
        str(REDACTED.left),
        str(REDACTED.top),
        str(REDACTED.width),
        str(REDACTED.height),
    ]
    assert page.evaluate("() => document.querySelector('figure.frame image').getBBox().width") > 0
    actions = page.locator("table.session-actions tbody tr").all_inner_texts()
    assert [row.split("\t")[1] for row in actions] == ["click", "type"] and "hello" in actions[1]
    # The click links to the screen just before it.
    link = page.locator("table.session-actions tbody tr").first.get_by_role("link", name="screenshot")
    assert link.get_attribute("href") == "?page=1#f-erin-session-f0"
    shot(page, "session")

    page.goto(recorded.url + "/me")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download everything").click()
    archive_path = tmp_path / "mine.zip"
    download_info.value.save_as(archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        device = recorded.devices["p-erin"].device_id
        png = f"sessions/{device}/erin-session/frames/erin-session-f0.png"
        assert png in names and "devices.json" in names and "pauses.json" in names
        assert not any("emil" in name for name in names)
        from PIL import Image

        assert redaction_boxes(Image.open(io.BytesIO(archive.read(png)))) == [REDACTED]

    page.goto(recorded.url + "/me/sessions")
    page.get_by_role("link", name="Open").click()
    page.get_by_role("button", name="Delete this session").click()
    page.get_by_text("The session is deleted").wait_for()
    assert page.get_by_text("The server holds no session of yours").is_visible()
    shot(page, "deleted")
    after = built_sessions(recorded, tmp_path / "after")
    assert len(after) == 1  # pseudonyms are salted per build: the count and the reader below tell
    with CollectorReader(recorded.data_dir) as reader:
        assert {batch.session_id for batch in reader.iter_batches()} == {"emil-session"}
        assert reader.load_frame("erin-session-f0") is None


def test_ask_for_an_exemption_and_see_it_pending(recorded: PortalCollector, page: Page) -> None:
    sign_in(page, recorded, "erin")
    page.get_by_role("link", name="Ask to be exempted from recording").click()
    page.get_by_label("Why?").fill("I handle HR cases all day")
    page.get_by_role("button", name="Send my request").click()
    page.get_by_text("Your request is sent").wait_for()
    assert page.locator("table.exemption-requests .pill").inner_text() == "pending"
    assert page.get_by_role("button", name="Send my request").count() == 0  # one request at a time
    shot(page, "exemption")
    pending = recorded.app.state.exemptions.list_requests("requested")
    assert [r["person_id"] for r in pending] == ["p-erin"]


def test_what_we_capture_reads_the_policy_in_force(recorded: PortalCollector, page: Page) -> None:
    sign_in(page, recorded, "erin")
    page.get_by_role("link", name="What we capture, and why").click()
    for title in (
        "What is captured",
        "What is never captured",
        "What you control",
        "What the data is used for",
    ):
        assert page.get_by_role("heading", name=title).is_visible()
    assert page.get_by_text("Never for judging people").is_visible()
    assert "libreoffice" in page.locator("ul.policy-items li").first.inner_text()  # the fleet's allowlist
    shot(page, "capture")


def test_an_employee_cannot_reach_anyone_elses_data(recorded: PortalCollector) -> None:
    emil_device = recorded.devices["p-emil"].device_id
    erin_device = recorded.devices["p-erin"].device_id
    with signed_in_client(recorded, "erin") as erin:
        token = form_token_of(erin)
        for path in (
            f"/me/sessions/{emil_device}/emil-session",
            f"/me/sessions/{erin_device}/emil-session",
            f"/me/sessions/{emil_device}/erin-session",
            "/me/frames/emil-session-f0.png",
        ):
            answer = erin.get(path)
            assert answer.status_code == 404, path
            assert b"emil" not in answer.content.replace(path.encode(), b"")
        for path in (
            f"/me/sessions/{emil_device}/emil-session/delete",
            f"/me/sessions/{erin_device}/emil-session/delete",
        ):
            assert erin.post(path, data={"csrf_token": token}).status_code == 404, path
        # Every page of hers names only her things.
        for path in ("/me", "/me/sessions", "/me/pauses", "/me/exemption", "/me/download"):
            answer = erin.get(path)
            assert answer.status_code == 200 and b"emil" not in answer.content, path
        # Her session cookie is no device token, and the admin API is not hers.
        assert erin.get("/v1/device/policy").status_code == 401
        assert erin.get("/v1/admin/exemptions").status_code == 401
    with signed_in_client(recorded, "emil") as emil:
        assert emil.get(f"/me/sessions/{emil_device}/emil-session").status_code == 200  # untouched
        assert emil.get("/me/frames/emil-session-f0.png").content.startswith(b"\x89PNG")
    for other in ("ada", "dana"):  # the admin and the data engineer have no "my data" of anyone's
        with signed_in_client(recorded, other) as client:
            assert client.get("/me").status_code == 403
            assert client.get("/me/frames/emil-session-f0.png").status_code == 403
    assert httpx.get(f"{recorded.url}/me/frames/emil-session-f0.png").status_code in (303, 307)


def test_delete_everything_asks_for_a_tick_then_deletes_only_mine(
    recorded: PortalCollector, page: Page
) -> None:
    sign_in(page, recorded, "erin")
    page.get_by_role("link", name="Delete everything").click()
    page.get_by_role("button", name="Delete everything").click()
    assert page.get_by_text("Nothing was deleted: tick the box to confirm.").is_visible()
    page.get_by_label("Yes, delete everything about me").check()
    shot(page, "delete-everything")
    page.get_by_role("button", name="Delete everything").click()
    page.get_by_text("Everything the server held about you is deleted.").wait_for()
    assert page.get_by_text("The server holds no session of yours").is_visible()
    with CollectorReader(recorded.data_dir) as reader:
        assert {batch.session_id for batch in reader.iter_batches()} == {"emil-session"}
    audit = [entry["action"] for entry in recorded.app.state.exemptions.audit(actor="account:erin")]
    assert "person_data_deleted" in audit
