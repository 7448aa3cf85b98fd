"""The employee's data, service layer: scoped to one person, pauses asked on the portal reach the
device's policy answer, redaction boxes found again in a frame, deletion reaches a dataset build, and
the archive holds everything. On a live collector: SQLite + blob folder, and PostgreSQL + S3."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Backend
from employee_support import REDACTED, screenshot_png, session_records
from PIL import Image
from test_collector import packed

from demotrace.collector.app import create_app
from demotrace.collector.capture_notice import capture_notice, readable_pattern
from demotrace.collector.errors import BadRequest, Conflict, NotFound
from demotrace.collector.my_archive import stream_archive
from demotrace.collector.my_data import MyData
from demotrace.collector.pauses import device_pause_state, portal_pause_minutes, request_for_device
from demotrace.collector.reader import CollectorReader
from demotrace.collector.redaction_boxes import redaction_boxes
from demotrace.collector.server import ServerThread
from demotrace.collector.store import CollectorLocation
from demotrace.collector.store.pause_store import PauseEvent, PauseRequest
from demotrace.geometry import Box
from demotrace.model import Record
from demotrace.policy import DEFAULT_FLEET_POLICY, CapturePolicy
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

ADMIN = "admin-token-for-my-data-tests"


@dataclass
class Person:
    person_id: str
    device_id: str
    token: str
    session_id: str


@dataclass
class Portal:
    client: httpx.Client
    data: MyData
    location: CollectorLocation

    def enroll(self, name: str, person_id: str) -> tuple[str, str]:
        answer = self.client.post("/v1/enroll", json={"device_name": name, "person_id": person_id})
        assert answer.status_code == 201, answer.text
        return answer.json()["device_id"], answer.json()["token"]

    def upload(self, token: str, record: Record) -> None:
        answer = self.client.put(
            f"/v1/records/{record_id_of(record)}",
            content=packed(record),
            headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
        )
        assert answer.status_code == 201, answer.text

    def device(self, token: str, method: str, path: str, body: object = None) -> httpx.Response:
        return self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})

    def person(self, name: str) -> Person:
        device, token = self.enroll(f"{name}-laptop", f"p-{name}")
        session = f"{name}-session"
        for record in session_records(session):
            self.upload(token, record)
        return Person(f"p-{name}", device, token, session)


@pytest.fixture
def portal(tmp_path: Path, backend: Backend) -> Iterator[Portal]:
    """A live collector on each of its two setups: SQLite + blob folder, PostgreSQL + S3 (moto)."""
    data_dir = tmp_path / "data"
    app = create_app(
        data_dir,
        database_url=backend.database_url,
        blobs_url=backend.blobs_url,
        retention_interval_s=None,
        admin_token=ADMIN,
    )
    location = CollectorLocation(data_dir, backend.database_url, backend.blobs_url)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Portal(client, app.state.my_data, location)


# --- pure decisions ----------------------------------------------------------------------------------


def test_a_painted_box_is_found_exactly_and_black_text_is_not_a_box() -> None:
    image = Image.open(io.BytesIO(screenshot_png()))
    assert redaction_boxes(image) == [REDACTED]
    assert redaction_boxes(Image.open(io.BytesIO(screenshot_png(redacted=None)))) == []
    odd = Box(13, 9, 77, 51)  # not on the 8-pixel grid
    assert redaction_boxes(Image.open(io.BytesIO(screenshot_png(redacted=odd)))) == [odd]


def test_a_portal_pause_is_bounded_by_the_policy() -> None:
    policy = CapturePolicy(pause_default_minutes=10, pause_max_minutes=20)
    assert portal_pause_minutes(None, policy) == 10
    assert portal_pause_minutes(90, policy) == 20
    assert portal_pause_minutes(5, policy) == 5
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(BadRequest):
            portal_pause_minutes(bad, policy)


def test_what_a_device_is_told_and_what_the_portal_shows() -> None:
    pause = PauseRequest(7, "p-a", "pause", 1000.0, 1600.0)
    assert request_for_device(pause, None, 1100.0) == {"id": 7, "action": "pause", "seconds_left": 500.0}
    assert request_for_device(pause, 7, 1100.0) is None  # applied already
    assert request_for_device(pause, None, 1700.0) is None  # ran out before the device heard of it
    resume = PauseRequest(8, "p-a", "resume", 1200.0, None)
    assert request_for_device(resume, 7, 1300.0) == {"id": 8, "action": "resume", "seconds_left": 0.0}

    paused = PauseEvent("d1", "paused", 1001.0, 1600.0, 7, 1002.0)
    assert device_pause_state(False, None, pause, None, 1100.0).waiting_for_device == "pause"
    state = device_pause_state(False, paused, pause, 7, 1100.0)
    assert (state.state, state.paused_until, state.waiting_for_device) == ("paused", 1600.0, None)
    assert device_pause_state(False, paused, pause, 7, 1700.0).state == "recording"  # it ran out
    assert device_pause_state(True, paused, pause, 7, 1100.0).state == "exempt"


def test_the_notice_is_written_from_the_policy_in_force() -> None:
    sections = {section.title: section for section in capture_notice(DEFAULT_FLEET_POLICY)}
    captured = sections["What is captured"]
    assert captured.items[0] == "Apps: " + ", ".join(DEFAULT_FLEET_POLICY.allow_apps)
    assert "https://*.atlassian.net/" in captured.items[1]  # a pattern as a person reads it
    assert "Only the apps and websites listed here" in captured.sentences[1]
    never = sections["What is never captured"].items
    assert "keepassxc" in never[0]
    # A rule that is no plain text is shown as the policy writes it, never left out.
    assert any(r"^https://outlook\.(live|office|office365)\.com/" in line for line in never)
    purpose = " ".join(sections["What the data is used for"].sentences)
    assert "Never for judging people" in purpose
    narrow = CapturePolicy(mode="allowlist", allow_apps=["libreoffice"], pause_max_minutes=45)
    sections = {section.title: section for section in capture_notice(narrow)}
    assert sections["What is captured"].items == ["Apps: libreoffice"]
    assert "at most 45 minutes" in sections["What you control"].sentences[0]


def test_patterns_read_as_plain_text_only_when_they_are() -> None:
    assert readable_pattern(r"^https://([a-z0-9-]+\.)*atlassian\.net/") == "https://*.atlassian.net/"
    assert readable_pattern(r"\bincognito\b") == "incognito"
    assert readable_pattern(r"\bmedical records?\b") is None
    assert readable_pattern(r"^about:(logins|preferences)") is None


# --- one person's data ---------------------------------------------------------------------------------


def test_each_person_sees_only_their_own_devices_sessions_and_frames(portal: Portal) -> None:
    alice, bob = portal.person("alice"), portal.person("bob")
    data = portal.data
    assert [device["device_id"] for device in data.devices(alice.person_id)] == [alice.device_id]
    assert [session["session_id"] for session in data.sessions(alice.person_id)] == [alice.session_id]

    view = data.session(alice.person_id, alice.device_id, alice.session_id)
    assert [action.kind for action in view.actions] == ["click", "type"]
    assert view.actions[1].text == "hello"
    assert [frame.frame_id for frame in view.frames] == [f"{alice.session_id}-f0"]
    width, height, boxes = data.frame_boxes(alice.person_id, f"{alice.session_id}-f0")
    assert (width, height, boxes) == (320, 200, [REDACTED])
    assert data.frame_png(alice.person_id, f"{alice.session_id}-f0").startswith(b"\x89PNG")

    # Bob's ids, asked for by Alice, are answered like ids that do not exist.
    for attempt in (
        lambda: data.session(alice.person_id, bob.device_id, bob.session_id),
        lambda: data.session(alice.person_id, alice.device_id, bob.session_id),
        lambda: data.frame_png(alice.person_id, f"{bob.session_id}-f0"),
        lambda: data.delete_session(alice.person_id, bob.device_id, bob.session_id, "person:alice"),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert data.session(bob.person_id, bob.device_id, bob.session_id).actions  # still there


def test_a_deleted_session_is_gone_from_the_collector_and_the_next_build(portal: Portal) -> None:
    alice, bob = portal.person("alice"), portal.person("bob")
    portal.upload(alice.token, session_records("alice-second")[0])
    answer = portal.data.delete_session(alice.person_id, alice.device_id, alice.session_id, "person:alice")
    assert answer == {"deleted_records": 2, "deleted_blobs": 2}
    assert [s["session_id"] for s in portal.data.sessions(alice.person_id)] == ["alice-second"]
    with CollectorReader(location=portal.location) as reader:
        assert {batch.session_id for batch in reader.iter_batches()} == {"alice-second", bob.session_id}
        assert reader.load_frame(f"{alice.session_id}-f0") is None

    everything = portal.data.delete_everything(alice.person_id, "person:alice")
    assert everything["deleted_records"] == 1
    assert portal.data.sessions(alice.person_id) == []
    assert [s["session_id"] for s in portal.data.sessions(bob.person_id)] == [bob.session_id]


def test_the_archive_holds_everything_of_the_person_and_nothing_of_others(portal: Portal) -> None:
    alice, _bob = portal.person("alice"), portal.person("bob")
    portal.data.pauses.request(alice.person_id, "pause", 5, "person:alice")
    body = b"".join(stream_archive(portal.data, alice.person_id))
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = set(archive.namelist())
        folder = f"sessions/{alice.device_id}/{alice.session_id}"
        assert {
            "README.txt",
            "devices.json",
            "pauses.json",
            "exemptions.json",
            f"{folder}/events.json",
            f"{folder}/actions.json",
            f"{folder}/frames/{alice.session_id}-f0.png",
        } == names
        actions = json.loads(archive.read(f"{folder}/actions.json"))
        assert [action["kind"] for action in actions] == ["click", "type"]
        frame = Image.open(io.BytesIO(archive.read(f"{folder}/frames/{alice.session_id}-f0.png")))
        assert frame.size == (320, 200) and redaction_boxes(frame) == [REDACTED]
        assert json.loads(archive.read("pauses.json"))[0]["what"] == "asked to pause"
    assert b"bob" not in body


def test_a_portal_pause_reaches_the_device_and_shows_once_the_device_reports_it(portal: Portal) -> None:
    alice, bob = portal.person("alice"), portal.person("bob")
    request = portal.data.pauses.request(alice.person_id, "pause", 600, "person:alice")  # capped: 30 min
    assert request.paused_until is not None and request.paused_until - request.requested_at == 30 * 60
    policy = portal.device(alice.token, "GET", "/v1/device/policy").json()
    assert policy["pause_request"]["id"] == request.id and policy["pause_request"]["action"] == "pause"
    assert portal.device(bob.token, "GET", "/v1/device/policy").json()["pause_request"] is None
    [device] = portal.data.devices(alice.person_id)
    assert (device["state"], device["waiting_for_device"]) == ("recording", "pause")

    event = {"kind": "paused", "at": request.requested_at + 1, "paused_until": request.paused_until}
    reported = portal.device(
        alice.token, "POST", "/v1/device/pauses", {"events": [{**event, "request_id": request.id}]}
    )
    assert reported.status_code == 200, reported.text
    [device] = portal.data.devices(alice.person_id)
    assert (device["state"], device["paused_until"], device["waiting_for_device"]) == (
        "paused",
        request.paused_until,
        None,
    )
    assert portal.device(alice.token, "GET", "/v1/device/policy").json()["pause_request"] is None
    history = portal.data.pauses.history(alice.person_id, {alice.device_id: "alice-laptop"})
    assert [(row["where"], row["what"]) for row in history] == [
        ("alice-laptop", "paused (asked on the portal)"),
        ("portal", "asked to pause"),
    ]
    assert portal.data.pauses.history(bob.person_id, {}) == []
    bad = portal.device(alice.token, "POST", "/v1/device/pauses", {"events": [{"kind": "slept", "at": 1}]})
    assert bad.status_code == 400 and "expected JSON" in bad.json()["detail"]
    huge = {"events": [{"kind": "paused", "at": 1, "request_id": 2**40}]}
    bad = portal.device(alice.token, "POST", "/v1/device/pauses", huge)
    assert bad.status_code == 400 and "request_id" in bad.json()["detail"]


def test_an_exemption_asked_on_the_portal_is_pending_then_refused_twice(portal: Portal) -> None:
    alice = portal.person("alice")
    with pytest.raises(BadRequest):
        portal.data.request_exemption(alice.person_id, "   ", False, "person:alice")
    request = portal.data.request_exemption(alice.person_id, "I handle HR cases", True, "person:alice")
    assert request.status == "requested" and request.person_id == alice.person_id
    with pytest.raises(Conflict, match="already waiting"):
        portal.data.request_exemption(alice.person_id, "again", False, "person:alice")
    assert [r.status for r in portal.data.exemptions(alice.person_id)] == ["requested"]
    with pytest.raises(Conflict, match="no enrolled device"):
        portal.data.request_exemption("p-nobody", "why not", False, "person:nobody")


def test_a_revoked_device_shows_as_revoked_with_when_it_was_last_heard_from(portal: Portal) -> None:
    alice = portal.person("alice")
    [device] = portal.data.devices(alice.person_id)
    assert device["state"] == "recording" and device["last_seen"] == device["last_upload"] is not None
    revoked = portal.client.post(
        f"/v1/admin/devices/{alice.device_id}/revoke", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert revoked.status_code == 200, revoked.text
    [device] = portal.data.devices(alice.person_id)
    assert device["state"] == "revoked"
