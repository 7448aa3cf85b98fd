"""Retention: the collector deletes raw data older than the fleet policy's ``retention_days``, on a
schedule, with an audit entry for each sweep that deleted anything.

Age counts from when the collector received a record (``received_at``): a clock the collector keeps,
which a device cannot set. Several workers or hosts on one database take a lease (a conditional update)
so one of them sweeps each round.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from demotrace.collector.exemptions import delete_blobs
from demotrace.collector.store import BlobStore, MetadataStore
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.store.tables import RecordEntry
from demotrace.collector.upload_guard import audit_record
from demotrace.policy import CapturePolicy, PolicyError, parse_policy

DAY_SECONDS = 24 * 3600
DEFAULT_SWEEP_INTERVAL_S = 3600.0
RETENTION_LEASE = "retention"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    retention_days: int
    cutoff: float  # records received before this were deleted
    records: int
    sessions: int
    blobs: int


def fleet_retention_days(store: ExemptionStore) -> int:
    """The stored fleet policy's retention_days, or the shipped default's."""
    stored = store.fleet_policy()
    if stored is not None:
        try:
            return parse_policy(stored.text, source="fleet policy").retention_days
        except PolicyError:  # pragma: no cover - policies are checked when stored
            log.exception("the stored fleet policy does not parse; using the default retention")
    return CapturePolicy().retention_days


class RetentionService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: ExemptionStore,
        blobs: BlobStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.store = store
        self.blobs = blobs
        self.clock = clock

    def sweep(self, actor: str = "collector") -> SweepResult:
        """Delete every record received more than retention_days ago (rows, then blobs), now."""
        days = fleet_retention_days(self.store)
        now = self.clock()
        cutoff = now - days * DAY_SECONDS
        deleted = self.metadata.delete_records_where(RecordEntry.received_at < cutoff)
        blobs = delete_blobs(self.blobs, deleted.blob_keys)
        result = SweepResult(days, cutoff, deleted.records, len(deleted.sessions), blobs)
        if deleted.records:
            self.store.append_audit(
                audit_record(
                    now,
                    actor,
                    "retention_deleted",
                    None,
                    retention_days=days,
                    cutoff=cutoff,
                    records=result.records,
                    sessions=result.sessions,
                    blobs=blobs,
                )
            )
        return result

    def sweep_if_due(self, interval_s: float) -> SweepResult | None:
        """Sweep unless another worker holds this round's lease; None when it does."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        # The lease runs a little short of the interval, so a slow sweep never skips the next round.
        if not self.metadata.take_lease(RETENTION_LEASE, holder, self.clock(), interval_s * 0.9):
            return None
        return self.sweep()


class RetentionSchedule:
    """Runs ``sweep_if_due`` every ``interval_s`` on a daemon thread (first one at start) until stopped."""

    def __init__(self, service: RetentionService, interval_s: float = DEFAULT_SWEEP_INTERVAL_S) -> None:
        self.service = service
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector-retention", daemon=True)

    def start(self) -> RetentionSchedule:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.service.sweep_if_due(self.interval_s)
                if result is not None and result.records:
                    log.info(
                        "retention: deleted %d records older than %d days",
                        result.records,
                        result.retention_days,
                    )
            except Exception:  # a failed round (database away) must not end the schedule
                log.exception("retention sweep failed; retrying next round")
            self._stop.wait(self.interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
