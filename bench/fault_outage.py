"""Fault injection: the collector is down for a whole working day, then comes back.

Accelerated: a device spool is filled with a day's worth of records as the recorder would write them
(frames at the sizes the recorder makes, a batch of events per ``batch_seconds`` of activity), in
seconds, under a spool quota, while the device's real uploader keeps trying a dead port. Then a real
collector process starts on that port and the uploader delivers the backlog.

Checked: the spool never held more than its quota (frames dropped, oldest first, and counted; events
never); every batch and every frame that was kept arrives exactly once; the collector's audit log has
the device's drop report.

    .venv/bin/python -m bench.fault_outage                 # 8 h, a batch per second of activity
    .venv/bin/python -m bench.fault_outage --batch-seconds 60 --quota-mb 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from demotrace.capture.sink import RecordDropped
from demotrace.collector.ingest import IngestService
from demotrace.collector.reader import CollectorReader
from demotrace.collector.store import LocalBlobStore, MetadataStore, default_database_url
from demotrace.demo.run import free_port, start_collector, stop_process
from demotrace.demo.working_day import WorkingDay, working_day
from demotrace.device.enrollment import DeviceCredentials
from demotrace.device.spool import Spool
from demotrace.device.uploader import Uploader
from demotrace.model import Batch

MiB = 1024 * 1024
ADMIN_TOKEN = "outage-bench-admin"


@dataclass
class OutageTally:
    records_written: int = 0
    batches_written: set[str] = field(default_factory=set)
    frames_written: int = 0
    frames_kept: set[str] = field(default_factory=set)  # in the spool when the collector came back
    frames_refused: int = 0  # RecordDropped at append: no room even after older frames went
    drops_counted: int = 0  # the spool's own count of frames dropped for the quota
    bytes_written: int = 0
    peak_sealed_bytes: int = 0  # the most the spool's records held at any time
    quota_bytes: int = 0
    failed_tries: int = 0  # the uploader's error while the collector was down
    fill_seconds: float = 0.0
    upload_seconds: float = 0.0
    stored: set[str] = field(default_factory=set)  # record ids at the collector
    duplicate_seqs: int = 0  # batches stored under a (session, seq) that another batch has
    left_pending: int = -1
    drop_reports: list[dict[str, object]] = field(default_factory=list)

    @property
    def missing(self) -> set[str]:
        return (self.batches_written | self.frames_kept) - set(self.stored)

    @property
    def unexpected(self) -> set[str]:
        return set(self.stored) - (self.batches_written | self.frames_kept)


def _enroll_offline(data_dir: Path, url: str) -> DeviceCredentials:
    """Enrol straight into the collector's data folder: the collector is not up yet."""
    data_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataStore.from_url(default_database_url(data_dir))
    try:
        enrollment = IngestService(metadata, LocalBlobStore(data_dir / "blobs")).enroll("laptop")
    finally:
        metadata.close()
    return DeviceCredentials(server_url=url, device_id=enrollment.device_id, token=enrollment.token)


def _fill(spool: Spool, day: WorkingDay, seed: int, tally: OutageTally) -> None:
    started = time.monotonic()
    for record in working_day(day, seed):
        tally.records_written += 1
        if isinstance(record, Batch):
            spool.append([record])  # never refused: events are never dropped
            tally.batches_written.add(record.batch_id)
        else:
            tally.frames_written += 1
            tally.bytes_written += len(record.data)
            try:
                spool.append([record])
            except RecordDropped:
                tally.frames_refused += 1
        if tally.records_written % 50 == 0:
            tally.peak_sealed_bytes = max(tally.peak_sealed_bytes, spool.stats()["sealed_bytes"])
    tally.peak_sealed_bytes = max(tally.peak_sealed_bytes, spool.stats()["sealed_bytes"])
    tally.fill_seconds = time.monotonic() - started


def run_outage(
    out: Path, day: WorkingDay, quota_bytes: int, seed: int = 1, deliver_timeout: float = 600.0
) -> OutageTally:
    """The whole run in ``out``: a day into a spool while the collector is down, then delivery."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = out / "collector"
    credentials = _enroll_offline(data, url)
    spool = Spool(out / "spool", os.urandom(32), quota_bytes=quota_bytes)
    tally = OutageTally(quota_bytes=quota_bytes)
    uploader = Uploader(spool, credentials, backoff_initial=0.2, backoff_max=1.0, request_timeout=10)
    uploader.start()  # nothing listens on the port: every try fails, nothing is lost
    collector = None
    try:
        _fill(spool, day, seed, tally)
        tally.failed_tries = int(uploader.last_error is not None)
        tally.frames_kept = {
            record.record_id for record in spool.pending(limit=10**9) if record.kind == "frame"
        }
        tally.drops_counted = spool.drops().quota
        started = time.monotonic()
        collector, _output = start_collector(data, port, ADMIN_TOKEN)
        deadline = time.monotonic() + deliver_timeout
        while spool.pending_count() and time.monotonic() < deadline:
            spool.committed.wait(0.2)  # the bench may poll what it observes
        # What the uploader sends after the backlog: the drop report.
        while not uploader.report_drops() and spool.drops().unreported_quota and time.monotonic() < deadline:
            time.sleep(0.2)
        tally.upload_seconds = time.monotonic() - started
        tally.left_pending = spool.pending_count()
        audit = httpx.get(
            f"{url}/v1/admin/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )
        tally.drop_reports = [
            entry["details"] for entry in audit.json() if entry["action"] == "device_report"
        ]
    finally:
        uploader.stop(flush=False)
        spool.close()
        if collector is not None:
            stop_process(collector)
    with CollectorReader(data) as reader:
        rows = list(reader.rows())
    tally.stored = {row.record_id for row in rows}
    seqs = [(row.session_id, row.seq) for row in rows if row.kind == "batch"]
    tally.duplicate_seqs = len(seqs) - len(set(seqs))
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--actions-per-hour", type=int, default=600)
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--quota-mb", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    day = WorkingDay(args.hours, args.actions_per_hour, args.batch_seconds)
    with tempfile.TemporaryDirectory(prefix="dt-outage-") as folder:
        tally = run_outage(Path(folder), day, int(args.quota_mb * MiB), args.seed)
    print(
        f"a {day.hours:g} h day: {tally.records_written} records ({len(tally.batches_written)} batches,"
        f" {tally.frames_written} frames, {tally.bytes_written / MiB:.1f} MiB of frames) written in"
        f" {tally.fill_seconds:.1f} s with the collector down"
    )
    print(
        f"spool quota {tally.quota_bytes / MiB:.1f} MiB, peak held {tally.peak_sealed_bytes / MiB:.1f} MiB"
        f" ({tally.peak_sealed_bytes / tally.quota_bytes:.2f} x the quota);"
        f" frames dropped {tally.drops_counted} (counted), kept {len(tally.frames_kept)}"
    )
    print(
        f"delivered in {tally.upload_seconds:.1f} s after the collector came up:"
        f" {len(tally.stored)} records, missing {len(tally.missing)}, unexpected {len(tally.unexpected)},"
        f" batches stored twice {tally.duplicate_seqs}, left pending {tally.left_pending}"
    )
    print(f"drop reports in the collector's audit log: {tally.drop_reports}")


if __name__ == "__main__":
    main()
