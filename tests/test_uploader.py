"""The device's uploader against a real collector (uvicorn on 127.0.0.1, SQLite) and a real spool."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import typer
import zstandard

from demotrace.collector.app import create_app
from demotrace.collector.ingest import IngestService
from demotrace.collector.reader import CollectorReader
from demotrace.collector.server import ServerThread, reserve_port
from demotrace.collector.store import LocalBlobStore, MetadataStore, default_database_url
from demotrace.device.enrollment import (
    DeviceCredentials,
    enroll,
)
from demotrace.device.spool import Spool
from demotrace.device.upload_rules import backoff_delay
from demotrace.device.uploader import Uploader, UploadError, upload_pending
from demotrace.model import Batch, Frame, Key, Marker, Record, encode_record
from demotrace.protocol import RECORD_MEDIA_TYPE

MiB = 1024 * 1024


def make_batch(session_id: str, seq: int) -> Batch:
    events: list[Key | Marker] = [
        Key(t=seq + i / 10, wall=1e9 + seq, down=i % 2 == 0, key="a", keysym=97, char="a") for i in range(50)
    ]
    events.append(Marker(t=seq + 5.0, wall=1e9 + seq, kind="task_end"))
    return Batch(
        batch_id=f"{session_id}-b{seq}",
        session_id=session_id,
        device_id="spoofed",
        seq=seq,
        events=list(events),
    )


def make_frame(session_id: str, index: int, size: int = 2048) -> Frame:
    return Frame(
        frame_id=f"{session_id}-f{index}",
        session_id=session_id,
        device_id="spoofed",
        t=float(index),
        wall=1e9 + index,
        left=0,
        top=0,
        width=32,
        height=32,
        media_type="image/png",
        data=os.urandom(size),
    )


def some_records(session_id: str = "s", count: int = 3) -> list[Record]:
    records: list[Record] = []
    for index in range(count):
        records += [make_frame(session_id, index), make_batch(session_id, index)]
    return records


def as_stored(record: Record, device_id: str) -> Record:
    return msgspec.structs.replace(record, device_id=device_id)


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Tests may poll what they observe; the code under test may not."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def enroll_offline(data_dir: Path, server_url: str) -> DeviceCredentials:
    """Enrol straight into a collector's data folder, for tests whose server is not up yet."""
    data_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataStore.from_url(default_database_url(data_dir))
    try:
        service = IngestService(metadata, LocalBlobStore(data_dir / "blobs"))
        enrollment = service.enroll("offline-laptop")
    finally:
        metadata.close()
    return DeviceCredentials(server_url=server_url, device_id=enrollment.device_id, token=enrollment.token)


def stored_records(data_dir: Path) -> list[Record]:
    with CollectorReader(data_dir) as reader:
        return [*reader.iter_frames(), *reader.iter_batches()]


def stored_count(data_dir: Path) -> int:
    metadata = MetadataStore.from_url(default_database_url(data_dir))
    try:
        return metadata.record_count()
    finally:
        metadata.close()


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
    with ServerThread(create_app(data_dir, max_body_bytes=1 * MiB)) as server:
        yield server


@pytest.fixture
def credentials(server: ServerThread) -> DeviceCredentials:
    return enroll(server.url, "laptop-1")


# --- uploading ------------------------------------------------------------------------------------


def test_uploader_sends_what_is_committed(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    first, second = some_records("s1"), some_records("s2")
    spool.append(first)  # pending before the uploader starts
    uploader = Uploader(spool, credentials)
    uploader.start()
    try:
        wait_until(lambda: spool.pending_count() == 0)
        spool.append(second)  # committed while it sleeps
        wait_until(lambda: spool.pending_count() == 0)
    finally:
        assert uploader.stop() == 0
    everything = first + second
    assert uploader.records_sent == len(everything)
    plain_bytes = sum(len(msgspec.msgpack.encode(r)) for r in everything)
    assert uploader.bytes_sent > 0
    assert uploader.bytes_sent < plain_bytes  # the key batches compress
    expected = [as_stored(r, credentials.device_id) for r in everything]
    stored = stored_records(data_dir)
    assert sorted(stored, key=repr) == sorted(expected, key=repr)


def test_dead_server_loses_nothing_and_records_arrive_once(spool: Spool, data_dir: Path) -> None:
    sock = reserve_port()  # bound, not listening: connections are refused until the server starts
    host, port = sock.getsockname()
    credentials = enroll_offline(data_dir, f"http://{host}:{port}")
    uploader = Uploader(spool, credentials, backoff_initial=0.05, backoff_max=0.2)
    uploader.start()
    try:
        records = some_records("s", 4)
        spool.append(records)
        wait_until(lambda: uploader.last_error is not None)
        assert "cannot reach" in (uploader.last_error or "")
        status = uploader.status()  # what `demotrace status` shows: why, and when the next try is
        assert "cannot reach" in status["upload_wait"]
        assert status["upload_next_try"] is not None and status["upload_next_try"] > time.time() - 1
        assert spool.pending_count() == len(records)
        assert uploader.records_sent == 0

        with ServerThread(create_app(data_dir), sock):
            wait_until(lambda: spool.pending_count() == 0)
            late = some_records("late", 1)
            spool.append(late)
            wait_until(lambda: spool.pending_count() == 0)
    finally:
        uploader.stop(flush=False)
    assert uploader.records_sent == len(records) + len(late)  # each one answered 201 once
    assert stored_count(data_dir) == len(records) + len(late)
    assert sorted(stored_records(data_dir), key=repr) == sorted(
        (as_stored(r, credentials.device_id) for r in records + late), key=repr
    )


def test_stop_is_immediate_while_backing_off(spool: Spool) -> None:
    sock = reserve_port()
    host, port = sock.getsockname()
    uploader = Uploader(spool, DeviceCredentials(f"http://{host}:{port}", "d", "t"), backoff_initial=30.0)
    spool.append(some_records())
    uploader.start()
    try:
        wait_until(lambda: uploader.last_error is not None)  # now sleeping ~15-30 s
        started = time.monotonic()
        left = uploader.stop(flush=False)
        assert time.monotonic() - started < 1.0
        assert left == 6
    finally:
        sock.close()


def test_stop_with_flush_gives_up_at_the_timeout(spool: Spool) -> None:
    sock = reserve_port()
    host, port = sock.getsockname()
    uploader = Uploader(spool, DeviceCredentials(f"http://{host}:{port}", "d", "t"), backoff_initial=30.0)
    uploader.start()
    spool.append(some_records())
    try:
        started = time.monotonic()
        assert uploader.stop(flush=True, timeout=2.0) == 6
        assert time.monotonic() - started < 3.0
    finally:
        sock.close()


def test_stop_with_flush_drains(spool: Spool, credentials: DeviceCredentials, data_dir: Path) -> None:
    uploader = Uploader(spool, credentials)
    uploader.start()
    spool.append(some_records("s", 5))
    assert uploader.stop(flush=True, timeout=30) == 0
    assert stored_count(data_dir) == 10
    assert uploader.stop() == 0  # a second stop is harmless


def test_a_poison_record_is_dropped_from_the_queue_and_the_rest_flows(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    too_big = make_frame("s", 99, size=2 * MiB)  # the server takes at most 1 MiB bodies: 413
    invalid = msgspec.structs.replace(make_batch("s", 98), seq=-1)  # 400
    good = some_records("s", 2)
    spool.append([too_big, invalid, *good])
    uploader = Uploader(spool, credentials)
    with caplog.at_level(logging.ERROR, logger="demotrace.device.record_upload"):
        uploader.start()
        try:
            wait_until(lambda: spool.pending_count() == 0)
        finally:
            uploader.stop()
    assert uploader.records_rejected == 2
    assert uploader.records_sent == len(good)
    assert stored_count(data_dir) == len(good)
    assert "s-f99" in caplog.text and "413" in caplog.text
    assert "s-b98" in caplog.text and "400" in caplog.text


def test_a_refused_token_keeps_records_pending(spool: Spool, server: ServerThread, data_dir: Path) -> None:
    uploader = Uploader(
        spool, DeviceCredentials(server.url, "d", "not-a-token"), backoff_initial=0.05, backoff_max=0.1
    )
    spool.append(some_records())
    uploader.start()
    try:
        wait_until(lambda: "401" in (uploader.last_error or ""))
    finally:
        uploader.stop(flush=False)
    assert spool.pending_count() == 6
    assert stored_count(data_dir) == 0


class FailingOnceBlobStore(LocalBlobStore):
    """A disk that fails the first write: the collector answers 500 and the device must retry."""

    failures_left = 1

    def put(self, key: str, data: bytes) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise OSError("disk on fire")
        super().put(key, data)


def test_server_errors_are_retried(spool: Spool, data_dir: Path) -> None:
    app = create_app(data_dir, blob_store=FailingOnceBlobStore(data_dir / "blobs"))
    with ServerThread(app) as server:
        credentials = enroll(server.url, "laptop")
        uploader = Uploader(spool, credentials, backoff_initial=0.05, backoff_max=0.1)
        spool.append(some_records())
        uploader.start()
        try:
            wait_until(lambda: spool.pending_count() == 0)
        finally:
            uploader.stop()
    assert uploader.records_sent == 6
    assert stored_count(data_dir) == 6


def test_upload_pending_once(spool: Spool, credentials: DeviceCredentials, data_dir: Path) -> None:
    assert upload_pending(spool, credentials) == 0
    spool.append(some_records("s", 3))
    assert upload_pending(spool, credentials) == 6
    assert spool.pending_count() == 0
    assert stored_count(data_dir) == 6


def test_upload_pending_with_no_server_raises_and_keeps_everything(spool: Spool) -> None:
    sock = reserve_port()
    host, port = sock.getsockname()
    spool.append(some_records())
    try:
        with pytest.raises(UploadError, match="6 records left in the spool"):
            upload_pending(spool, DeviceCredentials(f"http://{host}:{port}", "d", "t"))
    finally:
        sock.close()
    assert spool.pending_count() == 6


# --- a busy collector -----------------------------------------------------------------------------


class HeldBlobStore(LocalBlobStore):
    """A real blob folder whose writes wait until the test lets them go: their uploads stay in flight."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.released = threading.Event()
        self._waiting = 0
        self._changed = threading.Condition()

    def put(self, key: str, data: bytes) -> None:
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()
        self.released.wait(60)
        super().put(key, data)

    def wait_for_writers(self, count: int, timeout: float = 30.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._waiting >= count, timeout)


def put_in_background(url: str, token: str, record: Record) -> tuple[threading.Thread, list[int]]:
    """PUT one record on a thread; the list gets the status code once the collector answers."""
    statuses: list[int] = []
    rid = record.batch_id if isinstance(record, Batch) else record.frame_id
    body = zstandard.ZstdCompressor().compress(encode_record(record))

    def put() -> None:
        response = httpx.put(
            f"{url}/v1/records/{rid}",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
            timeout=60,
        )
        statuses.append(response.status_code)

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    return thread, statuses


def test_a_busy_collector_is_waited_for_and_nothing_is_lost(spool: Spool, data_dir: Path) -> None:
    blobs = HeldBlobStore(data_dir / "blobs")
    with ServerThread(create_app(data_dir, blob_store=blobs, max_concurrent_ingests=1)) as server:
        # Another device's upload takes the only ingest slot and stays in it.
        other = enroll(server.url, "other-laptop")
        holder, holder_status = put_in_background(server.url, other.token, make_frame("other", 0))
        assert blobs.wait_for_writers(1)

        credentials = enroll(server.url, "laptop")
        big = make_frame("s", 50, size=200 * 1024)  # goes in chunks: chunk PUTs meet the limit too
        records = [*some_records("s", 3), big]
        spool.append(records)
        uploader = Uploader(
            spool, credentials, backoff_initial=0.05, backoff_max=0.2, resumable_bytes=64 * 1024
        )
        uploader.start()
        try:
            wait_until(lambda: "503" in (uploader.last_error or ""))
            assert "retry in" in (uploader.last_error or "")  # the collector's own words reach the log
            assert spool.pending_count() == len(records)  # refused, so still pending
            assert stored_count(data_dir) == 0

            blobs.released.set()
            wait_until(lambda: spool.pending_count() == 0)
        finally:
            blobs.released.set()
            uploader.stop()
        holder.join(30)
    assert holder_status == [201]
    assert uploader.records_sent == len(records)
    assert uploader.records_rejected == 0
    mine = [record for record in stored_records(data_dir) if record.device_id == credentials.device_id]
    assert sorted(mine, key=repr) == sorted((as_stored(r, credentials.device_id) for r in records), key=repr)
    assert stored_count(data_dir) == len(records) + 1


def test_many_devices_at_once_through_a_narrow_collector_lose_nothing(tmp_path: Path, data_dir: Path) -> None:
    # Two slots for six devices sending chunks and records at once: most of them meet a 503 (37 in a
    # sample run); what matters is that every record arrives once and none is dropped as refused.
    devices = 6
    with ServerThread(create_app(data_dir, max_concurrent_ingests=2)) as server:
        spools = [Spool(tmp_path / f"spool-{index}", os.urandom(32)) for index in range(devices)]
        uploaders: list[Uploader] = []
        sent: list[tuple[DeviceCredentials, list[Record]]] = []
        for index, device_spool in enumerate(spools):
            credentials = enroll(server.url, f"laptop-{index}")
            records = [*some_records(f"d{index}", 4), make_frame(f"d{index}", 90, size=150 * 1024)]
            device_spool.append(records)
            sent.append((credentials, records))
            uploaders.append(
                Uploader(
                    device_spool,
                    credentials,
                    backoff_initial=0.02,
                    backoff_max=0.1,
                    resumable_bytes=32 * 1024,
                    chunk_bytes=16 * 1024,
                )
            )
        try:
            for uploader in uploaders:
                uploader.start()
            wait_until(lambda: all(each.pending_count() == 0 for each in spools), timeout=60)
        finally:
            for uploader in uploaders:
                uploader.stop()
            for device_spool in spools:
                device_spool.close()
    expected = sorted((as_stored(r, c.device_id) for c, records in sent for r in records), key=repr)
    assert sorted(stored_records(data_dir), key=repr) == expected
    assert sum(uploader.records_rejected for uploader in uploaders) == 0
    assert (data_dir / "uploads").exists() and list((data_dir / "uploads").iterdir()) == []


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    # Without Retry-After: exponential, within the upper half of each step, never past the cap.
    assert [backoff_delay(n, None, 1.0, 60.0, 1.0) for n in (1, 2, 3, 7, 8, 50)] == [1, 2, 4, 60, 60, 60]
    assert backoff_delay(3, None, 1.0, 60.0, 0.0) == 2.0
    # The collector's Retry-After wins over a shorter step, but a huge one is capped.
    assert backoff_delay(1, 5.0, 1.0, 60.0, 0.0) == 5.0
    assert backoff_delay(1, 3600.0, 1.0, 60.0, 0.0) == 60.0
    assert backoff_delay(8, 5.0, 1.0, 60.0, 1.0) == 60.0


# --- progress, as `demotrace status` shows it ---------------------------------------------------------


def test_status_shows_the_upload_under_way_record_by_record(
    spool: Spool, credentials: DeviceCredentials, data_dir: Path
) -> None:
    """While records go, the control socket answers with the burst's progress (read on the socket's
    thread while the upload thread waits in a request); afterwards `status` shows the last upload."""
    import shutil
    import tempfile

    from rich.console import Console
    from typer.testing import CliRunner

    from demotrace.cli.control import register_control_commands, status_table
    from demotrace.device.control import ControlServer
    from demotrace.device.control_client import ControlClient
    from demotrace.device.pause import PauseController
    from demotrace.policy import CaptureGate
    from demotrace.wording import size_text

    spool.append(some_records("p", count=5))  # 10 records
    uploaders: list[Uploader] = []
    seen: list[dict[str, object]] = []
    mid_burst: list[dict[str, object]] = []
    socket_dir = Path(tempfile.mkdtemp(prefix="dt-", dir="/tmp"))  # AF_UNIX paths are short
    controller = PauseController(
        CaptureGate(),
        socket_dir / "pause.json",
        pending_count=spool.pending_count,
        more_status=lambda: uploaders[0].status(),
    )
    control = ControlServer(controller, lambda kind, text: None, socket_dir / "control.sock").start()

    def look(request: httpx.Request) -> None:
        if request.method != "PUT":
            return
        seen.append(uploaders[0].progress.snapshot())
        if len(seen) == 5:
            mid_burst.append(ControlClient(control.path).request("status"))

    http = httpx.Client(event_hooks={"request": [look]})
    uploader = Uploader(spool, credentials, client=http)
    uploaders.append(uploader)
    try:
        assert uploader.status()["upload_progress"]["started"] is None  # nothing sent yet: no row
        uploader.start()
        wait_until(lambda: spool.pending_count() == 0 and not uploader.progress.snapshot()["active"])
        assert [snapshot["records_sent"] for snapshot in seen] == list(range(10))
        assert all(snapshot["active"] and snapshot["records_total"] == 10 for snapshot in seen)
        sent_bytes = [int(str(snapshot["bytes_sent"])) for snapshot in seen]
        assert sent_bytes == sorted(sent_bytes) and sent_bytes[0] == 0 < sent_bytes[-1]

        progress = mid_burst[0]["upload_progress"]
        assert isinstance(progress, dict)
        assert progress["active"] and (progress["records_sent"], progress["records_total"]) == (4, 10)
        console = Console(record=True, width=120)
        console.print(status_table(mid_burst[0]))
        shown = " ".join(console.export_text().split())
        assert "uploading" in shown and "4 of 10 records sent" in shown, shown

        last = uploader.status()["upload_progress"]
        assert not last["active"] and last["records_sent"] == 10 and last["bytes_sent"] == uploader.bytes_sent
        cli = typer_app(register_control_commands)
        result = CliRunner().invoke(cli, ["status", "--socket", str(control.path)])
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.split())
        assert f"last upload 10 records, {size_text(uploader.bytes_sent)}, ended at" in shown, shown
        assert "waiting to upload nothing" in shown, shown
    finally:
        uploader.stop()
        http.close()
        control.stop()
        controller.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
    assert stored_count(data_dir) == 10


def typer_app(register: Callable[[typer.Typer], None]) -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app
