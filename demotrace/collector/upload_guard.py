"""The upload guard: an exempt device's records are refused (403 ``exempt``), and one that raced an
approval is removed again. Every refusal goes to the audit log.

Its own module so that ingest and resumable uploads can consult it while the exemption service (which
discards a newly exempt device's partial uploads) is built after them: each is wired by constructor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from demotrace.collector.errors import Exempt
from demotrace.collector.store import BlobStore
from demotrace.collector.store.exemption_store import AuditRecord, ExemptionStore


def audit_record(at: float, actor: str, action: str, device_id: str | None, **details: object) -> AuditRecord:
    """An audit log entry (its id is given by the store); ``details`` are stored as sorted JSON."""
    return AuditRecord(0, at, actor, action, device_id, json.dumps(details, sort_keys=True))


class UploadGuard:
    """Refuses uploads from exempt devices, and removes a stored record whose device became exempt."""

    def __init__(
        self, store: ExemptionStore, blobs: BlobStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock

    def check_upload_allowed(self, device_id: str) -> None:
        if self.store.is_exempt(device_id):
            self.store.append_audit(
                audit_record(self.clock(), f"device:{device_id}", "upload_refused_exempt", device_id)
            )
            raise Exempt("this device is exempt from recording: the collector accepts nothing from it")

    def discard_if_exempt(self, device_id: str, record_id: str) -> None:
        if not self.store.is_exempt(device_id):
            return
        blob_key = self.store.delete_record(record_id, device_id)
        if blob_key is not None:
            self.blobs.delete(blob_key)
        self.store.append_audit(
            audit_record(
                self.clock(), f"device:{device_id}", "upload_refused_exempt", device_id, record_removed=True
            )
        )
        raise Exempt("this device is exempt from recording: the collector accepts nothing from it")
