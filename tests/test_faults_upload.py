"""Fault injection between the device and a real collector process: the collector down for a whole
working day, and the collector SIGKILLed mid-upload. The full-size day is bench/fault_outage.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from bench.fault_outage import MiB, run_outage
from demotrace.collector.reader import CollectorReader
from demotrace.collector.uploads import UPLOADS_FOLDER
from demotrace.demo.run import free_port, start_collector, stop_process
from demotrace.demo.working_day import WorkingDay, working_day
from demotrace.device.enrollment import enroll
from demotrace.device.spool import Spool
from demotrace.device.uploader import Uploader
from demotrace.model import Frame, Record, encode_record
from demotrace.protocol import record_id_of


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a RAM filesystem where there is one: the same code, without a disk's fsync cost
    for thousands of durable commits."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="dt-faults-") as folder:
        yield Path(folder)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Tests may poll what they observe; the code under test may not."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_working_day_with_the_collector_down_is_delivered_once_within_the_quota(fast_dir: Path) -> None:
    # 8 h at 600 actions an hour: 4,800 frames (~86 MiB), the events of each 2 minutes in one batch
    # (the recorder writes one a second; fewer, fuller batches keep the test short).
    day = WorkingDay(hours=8, batch_seconds=120)
    quota = 6 * MiB
    tally = run_outage(fast_dir, day, quota, seed=2, deliver_timeout=240)
    assert tally.frames_written == day.actions and tally.bytes_written > 10 * quota
    assert tally.failed_tries  # the uploader was trying a dead port all along
    assert tally.peak_sealed_bytes <= quota  # the spool stayed within its quota
    assert tally.drops_counted > 0 and tally.frames_kept  # the oldest frames went, the newest stayed
    assert tally.drops_counted + tally.frames_refused + len(tally.frames_kept) == tally.frames_written
    assert tally.left_pending == 0
    assert tally.missing == set() and tally.unexpected == set()  # every event, every kept frame, once
    assert tally.duplicate_seqs == 0
    assert tally.drop_reports == [
        {"frames_dropped_quota": tally.drops_counted, "frames_dropped_disk_full": 0, "disk_full": False}
    ]


def _stored_count(data: Path) -> int:
    db = sqlite3.connect(f"file:{data / 'collector.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _largest_part(data: Path) -> int:
    sizes = [part.stat().st_size for part in (data / UPLOADS_FOLDER).glob("*.part")]
    return max(sizes, default=0)


def test_a_collector_killed_mid_upload_loses_and_duplicates_nothing(fast_dir: Path) -> None:
    data, port = fast_dir / "collector", free_port()
    collector, _ = start_collector(data, port)
    device = enroll(f"http://127.0.0.1:{port}", "laptop")
    spool = Spool(fast_dir / "spool", os.urandom(32))
    large = Frame("large", "s", "d", 0.0, 1.7e9, 0, 0, 1920, 1080, "image/png", os.urandom(8 * MiB))
    normal: list[Record] = list(working_day(WorkingDay(hours=0.25, batch_seconds=5), seed=3))
    spool.append([large])  # sent first: resumable, in 256 KiB chunks
    for record in normal:
        spool.append([record])
    compress = zstandard.ZstdCompressor(level=3).compress
    normal_bytes = sum(len(compress(encode_record(record))) for record in normal)
    uploader = Uploader(spool, device, backoff_initial=0.05, backoff_max=0.5, request_timeout=10)
    kills = 0
    try:
        uploader.start()
        # Kill 1: half of the large record is in the collector's part file.
        wait_for(lambda: _largest_part(data) >= 4 * MiB, 60, "half of the large upload")
        collector.send_signal(signal.SIGKILL)
        collector.wait()
        kills += 1
        collector, _ = start_collector(data, port)
        # Kill 2: among the normal records, while they stream in one after the other.
        half = 1 + len(normal) // 2
        wait_for(lambda: _stored_count(data) >= half, 120, "half of the normal records")
        collector.send_signal(signal.SIGKILL)
        collector.wait()
        kills += 1
        collector, _ = start_collector(data, port)
        wait_for(lambda: spool.pending_count() == 0, 120, "every record to be delivered")
    finally:
        left = uploader.stop(flush=False)
        stop_process(collector)
    assert kills == 2 and left == 0
    with CollectorReader(data) as reader:
        rows = list(reader.rows())
        stored_large = reader.load_frame("large")
    expected = {"large"} | {record_id_of(record) for record in normal}
    assert sorted(row.record_id for row in rows) == sorted(expected)  # each once, none missing
    assert stored_large is not None and stored_large.data == large.data  # the resumed record is whole
    assert list((data / UPLOADS_FOLDER).glob("*.part")) == []  # no half upload left behind
    # The large record went on from where the collector had got to, not from its start again.
    assert uploader.bytes_sent < len(compress(encode_record(large))) + normal_bytes + 2 * MiB
    spool.close()
