"""When the uploader sends (network, battery, daily cap, bursts) and resumable uploads of large records.

The decision is a pure function, tested on its own; the uploader is tested against a real collector
(uvicorn on 127.0.0.1, SQLite) with a real spool and a real CaptureGate whose changes must wake it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import zstandard
from test_uploader import as_stored, make_frame, some_records, stored_count, stored_records, wait_until

from demotrace.collector.app import create_app
from demotrace.collector.errors import TooManyUploads, UploadNotFound
from demotrace.collector.ingest import IngestService
from demotrace.collector.server import DEFAULT_HOST, ServerThread, reserve_port
from demotrace.collector.store import LocalBlobStore, MetadataStore, default_database_url
from demotrace.collector.uploads import ResumableUploads, UploadRequest, parse_content_range
from demotrace.device.enrollment import DeviceCredentials, enroll
from demotrace.device.spool import Spool
from demotrace.device.upload_rules import (
    IMMEDIATE_UPLOAD_RULES,
    MB,
    UPLOAD_STATE_FILE,
    UploadPhase,
    UploadRules,
    daily_cap_bytes,
    local_day,
    seconds_until_next_local_day,
    upload_decision,
)
from demotrace.device.uploader import Uploader
from demotrace.model import Record, encode_record
from demotrace.policy import CaptureGate, CapturePolicy, DeviceState, LowBatteryMode

KiB = 1024
MiB = 1024 * KiB
NOW = time.time()
AC = DeviceState(notice_accepted=True)
POLICY = CapturePolicy()
RULES = UploadRules(burst_bytes=256 * KiB, burst_age_s=300, battery_backlog_bytes=8 * MiB, battery_age_s=7200)


# --- the decision ---------------------------------------------------------------------------------


def decide(
    policy: CapturePolicy = POLICY,
    state: DeviceState = AC,
    backlog: int = 1 * MiB,
    age: float | None = 10.0,
    sent_today: int = 0,
    phase: UploadPhase = "waiting",
) -> tuple[bool, str]:
    decision = upload_decision(policy, state, backlog, age, sent_today, NOW, phase=phase, rules=RULES)
    return decision.send, decision.reason


def test_nothing_to_send() -> None:
    assert decide(backlog=0, age=None) == (False, "nothing to send")


def test_a_metered_network_holds_uploads_unless_the_policy_allows_them() -> None:
    metered = DeviceState(notice_accepted=True, metered_network=True)
    send, reason = decide(state=metered)
    assert not send and "metered" in reason
    assert decide(policy=CapturePolicy(upload_on_metered=True), state=metered)[0]
    assert decide(state=metered, phase="final")[0] is False  # not even when flushing at stop


def test_on_battery_uploads_wait_unless_the_backlog_is_large_or_old() -> None:
    battery = DeviceState(notice_accepted=True, on_battery=True, battery_percent=80.0)
    decision = upload_decision(POLICY, battery, 1 * MiB, 60.0, 0, NOW, rules=RULES)
    assert not decision.send and "battery" in decision.reason
    assert decision.recheck_after_s == pytest.approx(7200 - 60)  # when the backlog becomes old
    assert decide(state=battery, backlog=8 * MiB)[0]
    assert decide(state=battery, age=7200.0)[0]
    assert decide(state=battery, phase="burst")[0]  # a burst that started goes on
    assert not decide(state=battery, phase="final")[0]  # the stop flush still defers on battery


@pytest.mark.parametrize("mode", ["input_only", "pause"])
def test_a_low_battery_holds_everything_unless_the_mode_is_normal(mode: LowBatteryMode) -> None:
    low = DeviceState(notice_accepted=True, on_battery=True, battery_percent=10.0)
    policy = CapturePolicy(low_battery_mode=mode, low_battery_percent=20)
    send, reason = decide(policy=policy, state=low, backlog=64 * MiB, age=86400.0)
    assert not send and "battery low" in reason
    normal = CapturePolicy(low_battery_mode="normal", low_battery_percent=20)
    assert decide(policy=normal, state=low, backlog=64 * MiB)[0]
    assert not decide(policy=normal, state=low, backlog=1 * MiB)[0]  # still an ordinary battery deferral
    assert decide(
        policy=policy, state=DeviceState(notice_accepted=True, on_battery=False, battery_percent=10.0)
    )[0]  # charging


def test_the_daily_cap_holds_until_the_next_local_day() -> None:
    policy = CapturePolicy(daily_upload_mb=1.0)
    assert daily_cap_bytes(policy) == 1 * MB
    decision = upload_decision(policy, AC, 1 * MiB, 10.0, 400_000, NOW, rules=RULES)
    assert decision.send and decision.max_bytes == 600_000
    decision = upload_decision(policy, AC, 1 * MiB, 10.0, 1 * MB, NOW, rules=RULES)
    assert not decision.send and "cap" in decision.reason
    assert decision.recheck_after_s is not None
    assert local_day(NOW + decision.recheck_after_s) != local_day(NOW)
    assert local_day(NOW + decision.recheck_after_s - 2) == local_day(NOW)


def test_seconds_until_next_local_day() -> None:
    for now in (NOW, NOW + 3600 * 7, NOW + 86400 * 100):
        wait = seconds_until_next_local_day(now)
        assert 0 < wait <= 86400 + 3600
        assert local_day(now + wait) != local_day(now)
        assert local_day(now + wait - 1) == local_day(now)


def test_uploads_go_in_bursts() -> None:
    decision = upload_decision(POLICY, AC, 10 * KiB, 30.0, 0, NOW, rules=RULES)
    assert not decision.send and "burst" in decision.reason
    assert decision.recheck_after_s == pytest.approx(300 - 30)
    assert decide(backlog=256 * KiB)[0]
    assert decide(backlog=10 * KiB, age=300.0)[0]
    assert decide(backlog=10 * KiB, phase="final")[0]  # the stop flush sends the trickle
    assert decide(backlog=10 * KiB, phase="burst")[0]


# --- the uploader obeying it ----------------------------------------------------------------------


class Clock:
    """Wall time a test can move by whole days."""

    def __init__(self) -> None:
        self.days = 0

    def __call__(self) -> float:
        return time.time() + self.days * 86400


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    yield spool
    spool.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "collector"


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerThread]:
    with ServerThread(create_app(data_dir)) as server:
        yield server


@pytest.fixture
def credentials(server: ServerThread) -> DeviceCredentials:
    return enroll(server.url, "laptop-1")


def held_because(uploader: Uploader, words: str) -> bool:
    decision = uploader.last_decision
    return decision is not None and not decision.send and words in decision.reason


def sorted_stored(data_dir: Path) -> list[Record]:
    return sorted(stored_records(data_dir), key=repr)


def expected(records: list[Record], credentials: DeviceCredentials) -> list[Record]:
    return sorted((as_stored(record, credentials.device_id) for record in records), key=repr)


def test_no_uploads_on_a_metered_network_until_it_turns_unmetered(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    gate = CaptureGate(notice_accepted=True)
    gate.update_state(metered_network=True)
    records = some_records("s", 3)
    spool.append(records)
    uploader = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES)
    uploader.start()
    try:
        wait_until(lambda: held_because(uploader, "metered"))
        more = some_records("more", 1)
        spool.append(more)  # a commit wakes it, and it holds again
        wait_until(lambda: held_because(uploader, "metered"))
        assert stored_count(data_dir) == 0
        assert spool.pending_count() == 8
        # Nothing but the network's change ends this hold: status names it and gives no time.
        status = uploader.status()
        assert status["upload_wait"] == "metered network: uploads wait for an unmetered one"
        assert status["upload_next_try"] is None
        assert (status["uploaded_today_bytes"], status["daily_cap_bytes"]) == (0, 100_000_000)

        # Nothing times this hold out: only the gate's change can wake the uploader.
        gate.update_state(metered_network=False)
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop()
    assert sorted_stored(data_dir) == expected(records + more, credentials)


def test_the_policy_may_allow_metered_uploads(spool: Spool, credentials: DeviceCredentials) -> None:
    gate = CaptureGate(CapturePolicy(upload_on_metered=True), notice_accepted=True)
    gate.update_state(metered_network=True)
    spool.append(some_records())
    uploader = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES)
    uploader.start()
    try:
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop()


def test_the_daily_cap_holds_the_backlog_for_the_next_day_across_restarts(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    # Random pixels do not compress: each frame costs ~20 kB, so a 50 kB cap lets two through a day.
    frames: list[Record] = [make_frame("s", index, size=20_000) for index in range(6)]
    spool.append(frames)
    gate = CaptureGate(CapturePolicy(daily_upload_mb=0.05), notice_accepted=True)
    clock = Clock()

    first = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES, clock=clock)
    first.start()
    wait_until(lambda: held_because(first, "cap"))
    assert first.stop(flush=True) == 4  # the stop flush obeys the cap too
    assert stored_count(data_dir) == 2
    state_file = spool.directory / UPLOAD_STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    sent_today = msgspec.json.decode(state_file.read_bytes())
    assert sent_today["day"] == local_day(clock())
    assert 40_000 < sent_today["sent_bytes"] <= 50_000

    # A restart the same day does not reset the count.
    second = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES, clock=clock)
    second.start()
    try:
        wait_until(lambda: held_because(second, "cap"))
        assert stored_count(data_dir) == 2
        clock.days = 1
        second.wake()  # stands in for the wait until midnight, which the injected clock cannot shorten
        wait_until(lambda: stored_count(data_dir) == 4)
        wait_until(lambda: held_because(second, "cap"))
        assert spool.pending_count() == 2
        clock.days = 2
        second.wake()
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        second.stop()
    assert sorted_stored(data_dir) == expected(frames, credentials)
    assert second.counter.sent_on(local_day(clock())) <= 50_000


def test_a_record_larger_than_the_whole_cap_still_goes_first_thing_in_a_day(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    spool.append([make_frame("s", 0, size=30_000), make_frame("s", 1, size=30_000)])
    gate = CaptureGate(CapturePolicy(daily_upload_mb=0.01), notice_accepted=True)
    clock = Clock()
    uploader = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES, clock=clock)
    uploader.start()
    try:
        wait_until(lambda: held_because(uploader, "cap"))
        assert stored_count(data_dir) == 1
        clock.days = 1
        uploader.wake()
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop()


def test_on_battery_uploads_wait_for_a_large_backlog_or_mains_power(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    gate = CaptureGate(
        CapturePolicy(low_battery_percent=20, low_battery_mode="input_only"), notice_accepted=True
    )
    gate.update_state(on_battery=True, battery_percent=80.0)
    rules = UploadRules(burst_bytes=0, burst_age_s=0, battery_backlog_bytes=64 * KiB, battery_age_s=3600)
    uploader = Uploader(spool, credentials, gate=gate, rules=rules)
    small = some_records("small", 2)  # a few kB
    spool.append(small)
    uploader.start()
    try:
        wait_until(lambda: held_because(uploader, "on battery"))
        assert stored_count(data_dir) == 0
        large: list[Record] = [make_frame("large", index, size=20_000) for index in range(4)]
        spool.append(large)  # the backlog passes 64 KiB: worth the radio even on battery
        wait_until(lambda: spool.pending_count() == 0)
        assert sorted_stored(data_dir) == expected(small + large, credentials)

        gate.update_state(battery_percent=10.0)  # low: input_only holds every upload
        huge: list[Record] = [make_frame("huge", index, size=40_000) for index in range(4)]
        spool.append(huge)
        wait_until(lambda: held_because(uploader, "battery low"))
        assert stored_count(data_dir) == len(small + large)

        gate.update_state(on_battery=False)  # plugged in
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop()
    assert sorted_stored(data_dir) == expected(small + large + huge, credentials)


def test_a_trickle_waits_for_a_burst_or_the_stop_flush(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    gate = CaptureGate(notice_accepted=True)
    rules = UploadRules(burst_bytes=64 * KiB, burst_age_s=3600)
    uploader = Uploader(spool, credentials, gate=gate, rules=rules)
    uploader.start()
    trickle = some_records("trickle", 2)
    spool.append(trickle)
    try:
        wait_until(lambda: held_because(uploader, "burst"))
        assert stored_count(data_dir) == 0
        burst: list[Record] = [make_frame("burst", index, size=20_000) for index in range(4)]
        spool.append(burst)  # passes 64 KiB: the whole backlog goes, the trickle included
        wait_until(lambda: spool.pending_count() == 0)
        assert stored_count(data_dir) == len(trickle + burst)

        late = some_records("late", 1)
        spool.append(late)
        wait_until(lambda: held_because(uploader, "burst"))
        assert stored_count(data_dir) == len(trickle + burst)
    finally:
        assert uploader.stop(flush=True) == 0  # the stop flush sends what a burst would have waited for
    assert sorted_stored(data_dir) == expected(trickle + burst + late, credentials)


def test_an_old_trickle_goes_when_it_reaches_the_burst_age(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    gate = CaptureGate(notice_accepted=True)
    clock = Clock()
    uploader = Uploader(spool, credentials, gate=gate, rules=UploadRules(burst_bytes=MiB), clock=clock)
    spool.append(some_records("s", 1))
    uploader.start()
    try:
        wait_until(lambda: held_because(uploader, "burst"))
        assert uploader.last_decision is not None
        assert 0 < (uploader.last_decision.recheck_after_s or 0) <= 300
        status = uploader.status()
        assert status["upload_wait"].startswith("collected to send in one burst, when 1024 KiB wait (")
        assert 0 < status["upload_next_try"] - clock() <= 300  # the burst goes by then at the latest
        clock.days = 1  # much later than 5 minutes; the timed wait is what wakes it in real life
        uploader.wake()
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop()
    assert stored_count(data_dir) == 2


# --- resumable uploads ----------------------------------------------------------------------------


def compressed(record: Record) -> bytes:
    """The body the uploader sends: zstd at the same level is deterministic."""
    return zstandard.ZstdCompressor(level=3).compress(encode_record(record))


def bind_port(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((DEFAULT_HOST, port))
    return sock


def uploads_folder(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "uploads").iterdir())


def test_a_large_record_resumes_after_a_restart_of_both_sides_and_is_stored_once(
    spool: Spool, data_dir: Path
) -> None:
    big = make_frame("s", 0, size=3 * MiB)  # ~3 MiB compressed: 12 chunks of 256 KiB
    body = compressed(big)
    spool.append([big])
    gate = CaptureGate(
        CapturePolicy(daily_upload_mb=2.0), notice_accepted=True
    )  # 7 chunks a day: the cap cuts it mid-record
    clock = Clock()
    sock = reserve_port()
    port = sock.getsockname()[1]
    with ServerThread(create_app(data_dir), sock) as server:
        credentials = enroll(server.url, "laptop")
        first = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES, clock=clock)
        first.start()
        wait_until(lambda: held_because(first, "cap"))
        first.stop(flush=False)
    assert first.bytes_sent == 7 * 256 * KiB
    assert stored_count(data_dir) == 0
    parts = [path for path in uploads_folder(data_dir) if path.suffix == ".part"]
    assert [path.stat().st_size for path in parts] == [7 * 256 * KiB]

    clock.days = 1
    # A new collector on the same folder and address, as after a restart.
    with ServerThread(create_app(data_dir), bind_port(port)):
        second = Uploader(spool, credentials, gate=gate, rules=IMMEDIATE_UPLOAD_RULES, clock=clock)
        second.start()
        try:
            wait_until(lambda: spool.pending_count() == 0)
        finally:
            second.stop()
    assert first.bytes_sent + second.bytes_sent == len(body)  # no byte sent twice
    assert second.records_sent == 1
    assert stored_count(data_dir) == 1
    assert stored_records(data_dir) == [as_stored(big, credentials.device_id)]
    assert uploads_folder(data_dir) == []  # chunks cleaned on completion


def test_a_broken_link_mid_upload_resumes_from_the_collectors_offset(
    spool: Spool, server: ServerThread, data_dir: Path
) -> None:
    credentials = enroll(server.url, "laptop")
    big = make_frame("s", 0, size=2 * MiB)
    other = some_records("small", 1)
    spool.append([big, *other])
    chunk_puts = [0]

    def cut_the_link_once(request: httpx.Request) -> None:
        if request.method == "PUT" and request.url.path.startswith("/v1/uploads/"):
            chunk_puts[0] += 1
            if chunk_puts[0] == 4:
                raise httpx.ConnectError("link went down", request=request)

    client = httpx.Client(event_hooks={"request": [cut_the_link_once]})
    uploader = Uploader(spool, credentials, client=client, backoff_initial=0.05, backoff_max=0.1)
    uploader.start()
    try:
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop()
        client.close()
    assert chunk_puts[0] > 4  # it did break, and went on
    assert uploader.bytes_sent == len(compressed(big)) + sum(len(compressed(r)) for r in other)
    assert sorted_stored(data_dir) == expected([big, *other], credentials)
    assert uploads_folder(data_dir) == []


# --- the collector's upload sessions, over HTTP ---------------------------------------------------


def open_session(
    server: ServerThread, token: str, body: bytes, record_id: str = "s-f0", sha: str | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/uploads",
        json={"record_id": record_id, "size": len(body), "sha256": sha or hashlib.sha256(body).hexdigest()},
        headers={"Authorization": f"Bearer {token}"},
    )


def put_chunk(
    server: ServerThread, token: str, upload_id: str, body: bytes, start: int, end: int
) -> httpx.Response:
    return httpx.put(
        f"{server.url}/v1/uploads/{upload_id}",
        content=body[start:end],
        headers={"Authorization": f"Bearer {token}", "Content-Range": f"bytes {start}-{end - 1}/{len(body)}"},
    )


def test_upload_sessions_report_offsets_and_refuse_gaps(server: ServerThread, data_dir: Path) -> None:
    token = enroll(server.url, "laptop").token
    body = compressed(make_frame("s", 0, size=100_000))
    opened = open_session(server, token, body)
    assert opened.status_code == 201 and opened.json()["received"] == 0
    upload_id = opened.json()["upload_id"]

    assert put_chunk(server, token, upload_id, body, 0, 40_000).status_code == 202
    gap = put_chunk(server, token, upload_id, body, 50_000, 60_000)
    assert gap.status_code == 416 and gap.json()["error"] == "offset_mismatch"
    status = httpx.get(f"{server.url}/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {token}"})
    assert status.json()["received"] == 40_000
    again = open_session(server, token, body)  # the same record again: the same session, its offset
    assert again.status_code == 200 and again.json() == status.json()

    stranger = enroll(server.url, "other").token
    assert (
        httpx.get(
            f"{server.url}/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {stranger}"}
        ).status_code
        == 404
    )
    assert httpx.get(f"{server.url}/v1/uploads/{upload_id}").status_code == 401

    done = put_chunk(server, token, upload_id, body, 40_000, len(body))
    assert done.status_code == 201 and done.json()["status"] == "created"
    assert uploads_folder(data_dir) == []
    # Sending the whole record again through a new session is idempotent.
    upload_id = open_session(server, token, body).json()["upload_id"]
    assert put_chunk(server, token, upload_id, body, 0, len(body)).status_code == 200
    assert stored_count(data_dir) == 1


def test_a_corrupt_assembly_is_refused_and_discarded(server: ServerThread, data_dir: Path) -> None:
    token = enroll(server.url, "laptop").token
    body = compressed(make_frame("s", 0, size=10_000))
    upload_id = open_session(server, token, body, sha="0" * 64).json()["upload_id"]
    answer = put_chunk(server, token, upload_id, body, 0, len(body))
    assert answer.status_code == 409 and answer.json()["error"] == "upload_corrupted"
    assert uploads_folder(data_dir) == []
    assert stored_count(data_dir) == 0


@pytest.mark.parametrize(
    ("request_body", "status"),
    [
        ({"record_id": "../x", "size": 10, "sha256": "0" * 64}, 400),
        ({"record_id": "r", "size": 0, "sha256": "0" * 64}, 400),
        ({"record_id": "r", "size": 10, "sha256": "nope"}, 400),
        ({"record_id": "r", "size": 10}, 400),
        ({"record_id": "r", "size": 64 * MiB, "sha256": "0" * 64}, 413),  # more than one record may be
    ],
)
def test_bad_session_requests_are_refused(
    server: ServerThread, request_body: dict[str, object], status: int
) -> None:
    token = enroll(server.url, "laptop").token
    answer = httpx.post(
        f"{server.url}/v1/uploads", json=request_body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == status, answer.text


def test_a_zstd_bomb_sent_in_chunks_is_413(data_dir: Path) -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 * MiB))
    with ServerThread(create_app(data_dir, max_record_bytes=8 * MiB)) as server:
        token = enroll(server.url, "laptop").token
        upload_id = open_session(server, token, bomb, record_id="bomb").json()["upload_id"]
        answer = put_chunk(server, token, upload_id, bomb, 0, len(bomb))
        assert answer.status_code == 413
    assert uploads_folder(data_dir) == []
    assert stored_count(data_dir) == 0


def test_bad_content_ranges_are_400(server: ServerThread) -> None:
    token = enroll(server.url, "laptop").token
    body = compressed(make_frame("s", 0, size=1_000))
    upload_id = open_session(server, token, body).json()["upload_id"]
    url = f"{server.url}/v1/uploads/{upload_id}"
    for content_range in (
        "",
        "bytes 0-9",
        f"bytes 5-2/{len(body)}",
        f"bytes 0-{len(body)}/{len(body)}",
        "bytes 0-9/7",
    ):
        answer = httpx.put(
            url,
            content=body[:10],
            headers={"Authorization": f"Bearer {token}", "Content-Range": content_range},
        )
        assert answer.status_code == 400, content_range


@pytest.fixture
def uploads(tmp_path: Path) -> Iterator[ResumableUploads]:
    metadata = MetadataStore.from_url(default_database_url(tmp_path))
    ingest = IngestService(metadata, LocalBlobStore(tmp_path / "blobs"))
    yield ResumableUploads(ingest, tmp_path / "uploads", max_open_per_device=2, expiry_seconds=3600)
    metadata.close()


def session_request(record_id: str, body: bytes) -> UploadRequest:
    return UploadRequest(record_id=record_id, size=len(body), sha256=hashlib.sha256(body).hexdigest())


def test_a_device_may_hold_only_so_many_open_uploads(uploads: ResumableUploads) -> None:
    device = uploads.ingest.enroll("laptop").device_id
    body = b"x" * 100
    uploads.begin(device, session_request("a", body))
    uploads.begin(device, session_request("b", body))
    assert uploads.begin(device, session_request("a", body)).created is False  # resuming is not opening
    with pytest.raises(TooManyUploads):
        uploads.begin(device, session_request("c", body))
    other = uploads.ingest.enroll("desktop").device_id
    assert uploads.begin(other, session_request("c", body)).created


def test_abandoned_uploads_expire(uploads: ResumableUploads) -> None:
    device = uploads.ingest.enroll("laptop").device_id
    body = compressed(make_frame("s", 0, size=1000))
    status = uploads.begin(device, session_request("s-f0", body))
    uploads.append(device, status.upload_id, parse_content_range(f"bytes 0-99/{len(body)}"), body[:100])
    assert uploads.expire(now=time.time() + 60) == 0
    assert uploads.status(device, status.upload_id).received == 100
    assert uploads.expire(now=time.time() + 7200) == 1
    assert list(uploads.folder.iterdir()) == []
    with pytest.raises(UploadNotFound):
        uploads.status(device, status.upload_id)
