"""Exemptions end to end: a real collector (uvicorn on 127.0.0.1, SQLite, blob folder), real enrolment,
a real encrypted spool and the device's PolicySync thread; admins through HTTP and the CLI."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import zstandard
from test_uploader import wait_until
from typer.testing import CliRunner

from demotrace.cli.admin import register_admin_commands
from demotrace.cli.exemption import register_exemption_commands
from demotrace.collector.app import create_app
from demotrace.collector.errors import Exempt
from demotrace.collector.exemptions import ExemptionRequestBody, ExemptionService, render_policy_toml
from demotrace.collector.ingest import IngestService
from demotrace.collector.reader import CollectorReader
from demotrace.collector.server import ServerThread, reserve_port
from demotrace.collector.store import LocalBlobStore, MetadataStore, default_database_url
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.upload_guard import UploadGuard
from demotrace.collector.uploads import ResumableUploads, UploadRequest, parse_content_range
from demotrace.device.enrollment import DeviceCredentials, enroll
from demotrace.device.policy_sync import PolicySync, PolicySyncError, fetch_device_policy, request_exemption
from demotrace.device.record_upload import RESUMABLE_THRESHOLD_BYTES
from demotrace.device.spool import Spool
from demotrace.device.uploader import DeviceExempt, Uploader, upload_pending
from demotrace.model import Batch, Frame, Key, encode_record
from demotrace.policy import (
    DEFAULT_FLEET_POLICY,
    DEFAULT_LOCAL_POLICY,
    CaptureGate,
    CapturePolicy,
    WindowContext,
    load_policy,
    parse_policy,
)
from demotrace.protocol import RECORD_MEDIA_TYPE

ADMIN_TOKEN = "admin-secret-token-for-tests"
# How the audit log names a caller of the admin API: by the first 8 hex of its token's SHA-256.
ADMIN_ACTOR = "admin:token:" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:8]
ALLOWLIST_POLICY = """
mode = "allowlist"
allow_apps = ["xterm", "firefox"]
pause_default_minutes = 5.0
pause_max_minutes = 10.0
refresh_seconds = 30.0
"""


def make_batch(session_id: str, seq: int) -> Batch:
    keys = [Key(t=seq + i / 10, wall=1e9 + seq, down=True, key="a", char="a") for i in range(5)]
    return Batch(
        batch_id=f"{session_id}-b{seq}", session_id=session_id, device_id="x", seq=seq, events=list(keys)
    )


def make_frame(session_id: str, index: int, size: int = 64) -> Frame:
    return Frame(
        frame_id=f"{session_id}-f{index}",
        session_id=session_id,
        device_id="x",
        t=float(index),
        wall=1e9 + index,
        left=0,
        top=0,
        width=4,
        height=4,
        media_type="image/png",
        data=b"\x89PNG" + os.urandom(size),
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "collector"


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerThread]:
    with ServerThread(create_app(data_dir, admin_token=ADMIN_TOKEN)) as running:
        yield running


@pytest.fixture
def alice(server: ServerThread) -> DeviceCredentials:
    return enroll(server.url, "alice-laptop")


@pytest.fixture
def bob(server: ServerThread) -> DeviceCredentials:
    return enroll(server.url, "bob-laptop")


def open_spool(tmp_path: Path, name: str) -> Spool:
    return Spool(tmp_path / name, bytes(range(32)))


@pytest.fixture
def alice_spool(tmp_path: Path) -> Iterator[Spool]:
    spool = open_spool(tmp_path, "alice-spool")
    yield spool
    spool.close()


def admin(
    server: ServerThread, method: str, path: str, token: str = ADMIN_TOKEN, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kwargs)


def set_policy(server: ServerThread, text: str) -> httpx.Response:
    """Set the fleet policy, confirming that it may widen capture."""
    return admin(server, "PUT", "/v1/admin/policy", content=text, params={"confirm_widening": "true"})


def audit_actions(server: ServerThread, device_id: str | None = None) -> list[str]:
    params = {"device_id": device_id} if device_id else {}
    response = admin(server, "GET", "/v1/admin/audit", params=params)
    assert response.status_code == 200, response.text
    return [entry["action"] for entry in response.json()]


def stored_device_ids(data_dir: Path) -> list[str]:
    with CollectorReader(data_dir) as reader:
        return [row.device_id for row in reader.rows()]


def blob_files(data_dir: Path, device_id: str) -> list[Path]:
    return [path for path in (data_dir / "blobs").rglob("*") if path.is_file() and device_id in str(path)]


def put_record(credentials: DeviceCredentials, record: Batch) -> httpx.Response:
    body = zstandard.ZstdCompressor().compress(encode_record(record))
    return httpx.put(
        f"{credentials.server_url}/v1/records/{record.batch_id}",
        content=body,
        headers={"Authorization": f"Bearer {credentials.token}", "Content-Type": RECORD_MEDIA_TYPE},
        timeout=30,
    )


def wait_for_exempt(gate: CaptureGate, timeout: float = 30.0) -> bool:
    exempt = threading.Event()

    def check() -> None:
        if gate.state.exempt:
            exempt.set()

    gate.subscribe(check)
    check()
    return exempt.wait(timeout)


def test_request_approve_delete_and_refuse(
    server: ServerThread,
    data_dir: Path,
    alice: DeviceCredentials,
    bob: DeviceCredentials,
    alice_spool: Spool,
    tmp_path: Path,
) -> None:
    # Both devices upload; alice then records more that is not yet sent.
    alice_spool.append([make_batch("a1", 0), make_frame("a1", 0), make_batch("a1", 1)])
    assert upload_pending(alice_spool, alice) == 3
    bob_spool = open_spool(tmp_path, "bob-spool")
    bob_spool.append([make_batch("b1", 0)])
    assert upload_pending(bob_spool, bob) == 1
    alice_spool.append([make_batch("a1", 2), make_frame("a1", 1)])
    assert alice_spool.pending_count() == 2
    assert stored_device_ids(data_dir).count(alice.device_id) == 3
    assert blob_files(data_dir, alice.device_id)

    # Alice asks, and wants what was collected gone.
    request = request_exemption(alice, "I handle patient records", delete_collected=True)
    assert request["status"] == "requested"
    assert fetch_device_policy(alice).exemption_status == "requested"
    with pytest.raises(PolicySyncError, match="already waiting"):
        request_exemption(alice, "again")

    # A wrong admin token is refused and changes nothing.
    wrong = admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/approve", token="guess")
    assert wrong.status_code == 401
    assert admin(server, "GET", "/v1/admin/exemptions", token="guess").status_code == 401
    listed = admin(server, "GET", "/v1/admin/exemptions").json()
    assert [(item["id"], item["status"]) for item in listed] == [(request["id"], "requested")]
    assert stored_device_ids(data_dir).count(alice.device_id) == 3
    assert audit_actions(server) == ["exemption_requested"]

    # Approval deletes alice's data on the collector, and only hers.
    approved = admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/approve")
    assert approved.status_code == 200, approved.text
    answer = approved.json()
    assert answer["status"] == "approved" and answer["decided_by"] == ADMIN_ACTOR
    assert answer["deleted_records"] == 3 and answer["deleted_blobs"] == 3
    assert stored_device_ids(data_dir) == [bob.device_id]
    assert blob_files(data_dir, alice.device_id) == []
    assert blob_files(data_dir, bob.device_id)
    again = admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/deny")
    assert again.status_code == 409

    # The device learns it on its next refresh: capture stops and the unsent spool is deleted.
    gate = CaptureGate(notice_accepted=True)
    sync = PolicySync(alice, gate, alice_spool, interval=0.2).start()
    try:
        assert wait_for_exempt(gate), f"PolicySync never applied the exemption: {sync.last_error}"
        rounds = sync.refreshes
        assert sync.wait_for_rounds(rounds + 1, 30)  # the round that applied it has finished
    finally:
        sync.stop()
    assert gate.state.exempt
    assert alice_spool.pending_count() == 0
    assert fetch_device_policy(alice).exempt

    # Anything still sent from alice is refused and not stored; bob is unaffected.
    refused = put_record(alice, make_batch("a2", 0))
    assert refused.status_code == 403
    assert refused.json()["error"] == "exempt"
    assert alice.device_id not in stored_device_ids(data_dir)
    assert put_record(bob, make_batch("b2", 0)).status_code == 201

    # Every step is in the audit log, with who and how much.
    audit = admin(server, "GET", "/v1/admin/audit", params={"device_id": alice.device_id}).json()
    actions = [entry["action"] for entry in audit]
    assert actions[:4] == [
        "exemption_requested",
        "exemption_approved",
        "collected_data_deleted",
        "exemption_applied_on_device",
    ]
    assert actions[4:] == ["upload_refused_exempt"]
    by_action = {entry["action"]: entry for entry in audit}
    assert by_action["exemption_requested"]["actor"] == f"device:{alice.device_id}"
    assert by_action["exemption_approved"]["actor"] == ADMIN_ACTOR
    assert by_action["collected_data_deleted"]["details"]["records"] == 3
    assert by_action["exemption_applied_on_device"]["details"]["deleted_unsent"] == 2
    bob_spool.close()


def test_exemption_without_deletion_keeps_collected_data(
    server: ServerThread, data_dir: Path, alice: DeviceCredentials, alice_spool: Spool
) -> None:
    alice_spool.append([make_batch("a1", 0)])
    upload_pending(alice_spool, alice)
    request = request_exemption(alice, "on leave for a project", delete_collected=False)
    answer = admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/approve").json()
    assert "deleted_records" not in answer
    assert stored_device_ids(data_dir) == [alice.device_id]
    assert put_record(alice, make_batch("a1", 1)).status_code == 403
    with pytest.raises(PolicySyncError, match="already exempt"):
        request_exemption(alice, "once more")
    # Sending by hand says so plainly, and keeps the records for the policy refresh to delete.
    alice_spool.append([make_batch("a1", 2)])
    with pytest.raises(DeviceExempt, match=r"exempt from recording.*1 record left"):
        upload_pending(alice_spool, alice)
    assert alice_spool.pending_count() == 1


def test_a_denied_device_keeps_recording_and_may_ask_again(
    server: ServerThread, alice: DeviceCredentials, alice_spool: Spool
) -> None:
    first = request_exemption(alice, "please")
    denied = admin(server, "POST", f"/v1/admin/exemptions/{first['id']}/deny")
    assert denied.json()["status"] == "denied"
    gate = CaptureGate(notice_accepted=True)
    alice_spool.append([make_batch("a1", 0)])
    PolicySync(alice, gate, alice_spool, interval=1).refresh_once()
    assert not gate.state.exempt
    assert alice_spool.pending_count() == 1
    assert fetch_device_policy(alice).exemption_status == "denied"
    second = request_exemption(alice, "new reason")
    assert second["id"] != first["id"]
    assert audit_actions(server) == ["exemption_requested", "exemption_denied", "exemption_requested"]


def test_fleet_policy_is_validated_stored_and_applied(
    server: ServerThread, alice: DeviceCredentials, alice_spool: Spool
) -> None:
    answer = fetch_device_policy(alice)
    assert answer.policy_source == "default"
    assert parse_policy(answer.policy) == DEFAULT_FLEET_POLICY

    bad = admin(server, "PUT", "/v1/admin/policy", content=b'mode = "everything"\n')
    assert bad.status_code == 400
    assert "mode" in bad.json()["detail"]
    assert fetch_device_policy(alice).policy_source == "default"
    assert admin(server, "PUT", "/v1/admin/policy", token="nope", content=ALLOWLIST_POLICY).status_code == 401

    # An empty or partial policy says what it lacks, and nothing changes for the devices.
    partials = [(b"", "mode"), (b'mode = "allowlist"\n', "allow_apps"), (b'mode = "denylist"\n', "deny_apps")]
    for partial, missing in partials:
        refused = admin(server, "PUT", "/v1/admin/policy", content=partial)
        assert refused.status_code == 400 and missing in refused.json()["detail"], refused.text
    nested = b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n"
    assert admin(server, "PUT", "/v1/admin/policy", content=nested).status_code == 400
    # Widening capture (firefox, a shorter pause) needs to be confirmed by name.
    unconfirmed = admin(server, "PUT", "/v1/admin/policy", content=ALLOWLIST_POLICY)
    assert unconfirmed.status_code == 409, unconfirmed.text
    assert "allow_apps gains firefox" in unconfirmed.json()["detail"]
    assert "pause_max_minutes drops from 30 to 10" in unconfirmed.json()["detail"]
    assert fetch_device_policy(alice).policy_source == "default"

    stored = set_policy(server, ALLOWLIST_POLICY)
    assert stored.status_code == 200, stored.text
    gate = CaptureGate(notice_accepted=True)
    PolicySync(alice, gate, alice_spool).refresh_once()
    assert gate.policy.mode == "allowlist"
    assert gate.policy.allow_apps == ["xterm", "firefox"]
    assert gate.policy.pause_max_minutes == 10
    assert audit_actions(server) == ["policy_set"]
    details = admin(server, "GET", "/v1/admin/audit").json()[-1]["details"]
    assert details["diff"]["allow_apps"]["added"] == ["firefox"]
    assert details["diff"]["pause_max_minutes"] == {"from": 30.0, "to": 10.0}
    # Narrowing again needs no confirmation.
    narrower = ALLOWLIST_POLICY.replace('"xterm", "firefox"', '"xterm"')
    assert admin(server, "PUT", "/v1/admin/policy", content=narrower).status_code == 200


def test_the_device_keeps_its_last_policy_while_the_server_is_down(
    tmp_path: Path, alice_spool: Spool
) -> None:
    data_dir = tmp_path / "collector"
    sock = reserve_port()
    server = ServerThread(create_app(data_dir, admin_token=ADMIN_TOKEN), sock).start()
    device = enroll(server.url, "carol")
    set_policy(server, ALLOWLIST_POLICY)
    gate = CaptureGate(notice_accepted=True)
    cache = tmp_path / "policy-cache.json"
    sync = PolicySync(device, gate, alice_spool, cache_file=cache)
    assert sync.refresh_once() is not None
    server.stop()

    assert sync.refresh_once() is None
    assert sync.last_error is not None and "cannot reach" in sync.last_error
    assert gate.policy.mode == "allowlist"

    # A restart while the server is still down starts from the cached fleet policy, not the default.
    restarted = CaptureGate(notice_accepted=True)
    PolicySync(device, restarted, alice_spool, cache_file=cache)
    assert restarted.policy.mode == "allowlist"


def test_the_default_policy_renders_to_toml_that_reads_back() -> None:
    assert parse_policy(render_policy_toml(DEFAULT_LOCAL_POLICY)) == DEFAULT_LOCAL_POLICY
    custom = parse_policy(ALLOWLIST_POLICY)
    assert parse_policy(render_policy_toml(custom)) == custom


def test_admin_api_is_off_without_an_admin_token(tmp_path: Path) -> None:
    with ServerThread(create_app(tmp_path / "c")) as server:
        response = admin(server, "GET", "/v1/admin/exemptions")
        assert response.status_code == 401
        assert "admin API is off" in response.json()["detail"]


def test_bad_exemption_requests_are_refused_clearly(server: ServerThread, alice: DeviceCredentials) -> None:
    url = f"{server.url}/v1/exemptions"
    headers = {"Authorization": f"Bearer {alice.token}"}
    assert httpx.post(url, json={"reason": "  "}, headers=headers).status_code == 400
    assert httpx.post(url, content=b"not json", headers=headers).status_code == 400
    assert httpx.post(url, json={"reason": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert admin(server, "POST", "/v1/admin/exemptions/999/approve").status_code == 404
    assert admin(server, "POST", "/v1/admin/exemptions/999/maybe").status_code == 404  # only approve|deny
    assert audit_actions(server) == []


def test_admin_cli(server: ServerThread, alice: DeviceCredentials, tmp_path: Path) -> None:
    app = typer.Typer()
    register_exemption_commands(app)
    register_admin_commands(app)
    runner = CliRunner()
    credentials_file = tmp_path / "device.json"
    from demotrace.device.enrollment import save_credentials

    save_credentials(alice, credentials_file)
    result = runner.invoke(
        app, ["exemption", "request", "--reason", "works on HR cases", "--credentials", str(credentials_file)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["exemption", "status", "--credentials", str(credentials_file)])
    assert "requested" in result.output

    admin_args = ["--server", server.url, "--admin-token", ADMIN_TOKEN]
    result = runner.invoke(app, ["admin", "exemptions", "list", *admin_args, "--json"])
    assert result.exit_code == 0, result.output
    assert "works on HR cases" in result.output
    request_id = admin(server, "GET", "/v1/admin/exemptions").json()[0]["id"]

    result = runner.invoke(
        app,
        ["admin", "exemptions", "approve", str(request_id), "--server", server.url, "--admin-token", "bad"],
    )
    assert result.exit_code == 2 and "401" in result.output
    result = runner.invoke(app, ["admin", "exemptions", "approve", str(request_id), *admin_args])
    assert result.exit_code == 0, result.output
    assert "approved" in result.output
    result = runner.invoke(app, ["exemption", "status", "--credentials", str(credentials_file)])
    assert "exempt" in result.output

    result = runner.invoke(app, ["admin", "policy", "get", *admin_args])
    assert result.exit_code == 0, result.output
    assert 'mode = "allowlist"' in result.output and "the built-in default" in result.output
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('mode = "sometimes"\n')
    result = runner.invoke(app, ["admin", "policy", "set", str(policy_file), *admin_args])
    assert result.exit_code == 2 and "mode" in result.output
    policy_file.write_text(ALLOWLIST_POLICY)
    result = runner.invoke(app, ["admin", "policy", "set", str(policy_file), *admin_args])
    assert result.exit_code == 2 and "widens capture" in result.output
    result = runner.invoke(
        app, ["admin", "policy", "set", str(policy_file), *admin_args, "--confirm-widening"]
    )
    assert result.exit_code == 0 and "allowlist" in result.output
    fetched = tmp_path / "fetched.toml"
    result = runner.invoke(app, ["admin", "policy", "get", *admin_args, "--out", str(fetched)])
    assert result.exit_code == 0, result.output
    assert load_policy(fetched) == load_policy(policy_file)  # what was set comes back, ready to edit

    result = runner.invoke(app, ["admin", "audit", *admin_args, "--json"])
    assert result.exit_code == 0
    for action in ("exemption_requested", "exemption_approved", "policy_set"):
        assert action in result.output
    assert ADMIN_ACTOR in result.output


# --- exempt devices and the upload path --------------------------------------------------------------


def packed(frame: Frame) -> bytes:
    return zstandard.ZstdCompressor().compress(encode_record(frame))


def session_of(credentials: DeviceCredentials, body: bytes, record_id: str) -> httpx.Response:
    return httpx.post(
        f"{credentials.server_url}/v1/uploads",
        json={"record_id": record_id, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()},
        headers={"Authorization": f"Bearer {credentials.token}"},
        timeout=30,
    )


def chunk_of(
    credentials: DeviceCredentials, upload_id: str, body: bytes, start: int, end: int
) -> httpx.Response:
    return httpx.put(
        f"{credentials.server_url}/v1/uploads/{upload_id}",
        content=body[start:end],
        headers={
            "Authorization": f"Bearer {credentials.token}",
            "Content-Range": f"bytes {start}-{end - 1}/{len(body)}",
        },
        timeout=30,
    )


def upload_files(data_dir: Path) -> list[str]:
    return sorted(path.name for path in (data_dir / "uploads").iterdir())


def test_an_exempt_device_can_neither_begin_nor_continue_a_resumable_upload(
    server: ServerThread, data_dir: Path, alice: DeviceCredentials, bob: DeviceCredentials
) -> None:
    alice_body, bob_body = packed(make_frame("a1", 0, 100_000)), packed(make_frame("b1", 0, 100_000))
    alice_upload = session_of(alice, alice_body, "a1-f0").json()["upload_id"]
    assert chunk_of(alice, alice_upload, alice_body, 0, 40_000).status_code == 202
    bob_upload = session_of(bob, bob_body, "b1-f0").json()["upload_id"]
    assert chunk_of(bob, bob_upload, bob_body, 0, 40_000).status_code == 202

    request = request_exemption(alice, "I handle payroll")
    approved = admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["discarded_uploads"] == 1
    # Alice's half upload went with the approval; bob's is untouched.
    assert upload_files(data_dir) == [f"{bob_upload}.json", f"{bob_upload}.part"]

    refusals = [
        chunk_of(alice, alice_upload, alice_body, 40_000, len(alice_body)),
        httpx.get(
            f"{server.url}/v1/uploads/{alice_upload}", headers={"Authorization": f"Bearer {alice.token}"}
        ),
        session_of(alice, alice_body, "a1-f0"),
        session_of(alice, packed(make_frame("a1", 1, 10)), "a1-f1"),
    ]
    for refused in refusals:
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "exempt"
        assert "exempt from recording" in refused.json()["detail"]
    assert upload_files(data_dir) == [f"{bob_upload}.json", f"{bob_upload}.part"]

    assert chunk_of(bob, bob_upload, bob_body, 40_000, len(bob_body)).status_code == 201
    assert upload_files(data_dir) == []
    assert stored_device_ids(data_dir) == [bob.device_id]
    actions = audit_actions(server, alice.device_id)
    assert actions[:3] == ["exemption_requested", "exemption_approved", "partial_uploads_discarded"]
    assert actions[3:] == ["upload_refused_exempt"] * len(refusals)


def test_a_chunk_from_a_device_exempted_meanwhile_is_refused_and_its_upload_discarded(
    tmp_path: Path,
) -> None:
    metadata = MetadataStore.from_url(default_database_url(tmp_path))
    blobs = LocalBlobStore(tmp_path / "blobs")
    store = ExemptionStore(metadata.engine)
    service = IngestService(metadata, blobs, upload_guard=UploadGuard(store, blobs))
    exemptions = ExemptionService(store, blobs)
    # Not handed to the exemption service: its approval cannot discard, so the chunk path must.
    uploads = ResumableUploads(service, tmp_path / "uploads")
    try:
        device = service.enroll("laptop").device_id
        other = service.enroll("desktop").device_id
        body = packed(make_frame("s", 0, 10_000))
        request = UploadRequest("s-f0", len(body), hashlib.sha256(body).hexdigest())
        mine = uploads.begin(device, request)
        theirs = uploads.begin(other, request)
        for owner, session in ((device, mine), (other, theirs)):
            uploads.append(
                owner, session.upload_id, parse_content_range(f"bytes 0-99/{len(body)}"), body[:100]
            )
        exemption = exemptions.request_exemption(device, ExemptionRequestBody(reason="leave"))
        exemptions.decide(int(str(exemption["id"])), approve=True, actor="admin:priya")

        with pytest.raises(Exempt):
            uploads.append(
                device, mine.upload_id, parse_content_range(f"bytes 100-199/{len(body)}"), body[100:200]
            )
        assert sorted(path.stem for path in uploads.folder.iterdir()) == [theirs.upload_id] * 2
        assert uploads.status(other, theirs.upload_id).received == 100
        assert service.metadata.record_count() == 0
    finally:
        metadata.close()


@pytest.mark.parametrize("resumable_bytes", [RESUMABLE_THRESHOLD_BYTES, 0], ids=["whole", "resumable"])
def test_an_exempt_answer_stops_the_uploader_and_applies_the_exemption_at_once(
    server: ServerThread,
    data_dir: Path,
    alice: DeviceCredentials,
    alice_spool: Spool,
    resumable_bytes: int,
) -> None:
    gate = CaptureGate(notice_accepted=True)
    # The device has heard from the collector (not exempt) and would ask again only in an hour.
    sync = PolicySync(alice, gate, alice_spool, interval=3600).start()
    upload_requests: list[str] = []
    client = httpx.Client(
        event_hooks={
            "request": [lambda request: upload_requests.append(f"{request.method} {request.url.path}")]
        }
    )
    uploader = Uploader(
        alice_spool,
        alice,
        client=client,
        backoff_initial=0.05,
        backoff_max=0.1,
        resumable_bytes=resumable_bytes,
        on_exempt=sync.refresh_soon,
    )
    try:
        assert sync.wait_for_rounds(1, 30) and not gate.state.exempt
        request = request_exemption(alice, "I work on HR cases")
        assert admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/approve").status_code == 200
        records: list[Batch | Frame] = [make_batch("a1", 0), make_frame("a1", 0), make_batch("a1", 1)]
        alice_spool.append(records)

        uploader.start()
        assert wait_for_exempt(gate), f"the exempt answer did not apply the exemption: {sync.last_error}"
        assert sync.wait_for_rounds(2, 30)  # the round the uploader asked for has finished
        wait_until(lambda: not uploader.running)  # it stopped instead of backing off and retrying
    finally:
        left = uploader.stop()
        sync.stop()
        client.close()

    assert uploader.exempt and "exempt" in (uploader.last_error or "")
    assert len(upload_requests) == 1, upload_requests  # one refused request, no retry, no stop flush
    assert upload_requests[0].startswith("PUT /v1/records/" if resumable_bytes else "POST /v1/uploads")
    # What an approved exemption means on the device: nothing is captured, nothing unsent is kept.
    assert gate.decide(WindowContext(app="XTerm", title="bash")).capture == "nothing"
    assert left == 0 and alice_spool.pending_count() == 0
    assert alice.device_id not in stored_device_ids(data_dir)
    assert upload_files(data_dir) == []
    audit = admin(server, "GET", "/v1/admin/audit", params={"device_id": alice.device_id}).json()
    assert [entry["action"] for entry in audit] == [
        "exemption_requested",
        "exemption_approved",
        "upload_refused_exempt",
        "exemption_applied_on_device",
    ]
    assert audit[-1]["details"]["deleted_unsent"] == len(records)


def test_a_local_policy_replaces_the_fleet_policy_but_not_an_exemption(
    server: ServerThread, alice: DeviceCredentials, alice_spool: Spool, tmp_path: Path
) -> None:
    assert set_policy(server, ALLOWLIST_POLICY).status_code == 200
    local = CapturePolicy(mode="denylist", deny_apps=["keepassxc"])
    gate = CaptureGate(local, notice_accepted=True)
    cache = tmp_path / "policy-cache.json"
    sync = PolicySync(alice, gate, alice_spool, cache_file=cache, follow_fleet_policy=False)
    assert sync.refresh_once() is not None
    assert gate.policy == local  # the fleet's allowlist did not replace the researcher's own policy

    request = request_exemption(alice, "research device")
    admin(server, "POST", f"/v1/admin/exemptions/{request['id']}/approve")
    alice_spool.append([make_batch("a1", 0)])
    sync.refresh_once()
    assert gate.state.exempt and gate.policy == local
    assert alice_spool.pending_count() == 0
    # After a restart, the cached exemption holds before the collector is reached; the policy stays local.
    restarted = CaptureGate(local, notice_accepted=True)
    PolicySync(alice, restarted, alice_spool, cache_file=cache, follow_fleet_policy=False)
    assert restarted.state.exempt and restarted.policy == local
