"""People: the pseudonymous persons devices are enrolled for, and the deletion of everything the
collector holds about one of them (a person who left, or asked for it), across all their devices.

A deletion destroys the person's data key first (crypto-shredding: every copy of their blobs, in backups
too, becomes unreadable), deletes their record rows in the same transaction, discards their unfinished
uploads, then deletes the blobs; the audit log has each step. Their devices stay enrolled: what they
upload afterwards is new data, sealed with a new key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from demotrace.collector.errors import NotFound
from demotrace.collector.exemptions import delete_blobs
from demotrace.collector.ingest import check_person_id
from demotrace.collector.store import BlobStore, MetadataStore
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.upload_guard import audit_record
from demotrace.collector.uploads import ResumableUploads


class PeopleService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: ExemptionStore,
        blobs: BlobStore,
        *,
        partial_uploads: ResumableUploads | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.store = store
        self.blobs = blobs
        self.partial_uploads = partial_uploads
        self.clock = clock

    def list_people(self) -> list[dict[str, object]]:
        """Every person and how many devices they have: never how much of their activity was recorded
        (no per-person activity figure anywhere, see cohorts.py)."""
        return [
            {"person_id": person, "created_at": created, "devices": devices}
            for person, created, devices, _records in self.metadata.people()
        ]

    def delete_person_data(self, person_id: str, actor: str) -> dict[str, object]:
        """Delete every record of the person's devices (key first, then rows, uploads and blobs)."""
        check_person_id(person_id)
        if not self.store.person_exists(person_id):
            raise NotFound(f"no person {person_id}")
        blob_keys = self.store.delete_person_data(
            person_id, audit_record(self.clock(), actor, "person_data_deleted", None, person_id=person_id)
        )
        devices = self.store.devices_of(person_id)
        discarded = 0
        if self.partial_uploads is not None:
            discarded = sum(self.partial_uploads.discard_device(device) for device in devices)
        deleted = delete_blobs(self.blobs, blob_keys)
        self.store.append_audit(
            audit_record(
                self.clock(),
                actor,
                "person_blobs_deleted",
                None,
                person_id=person_id,
                blobs=deleted,
                discarded_uploads=discarded,
            )
        )
        return {
            "person_id": person_id,
            "devices": devices,
            "deleted_records": len(blob_keys),
            "deleted_blobs": deleted,
            "discarded_uploads": discarded,
            "data_key": "destroyed",
        }
