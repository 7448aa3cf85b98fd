"""Exemption requests, the fleet policy and the audit log, on the collector's database.

Exemptions belong to a person: a request comes from one device, and its approval covers every device of
that person (the one that asked, the others, and any enrolled later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from demotrace.collector.store.tables import (
    EXEMPTION_APPROVED,
    EXEMPTION_DENIED,
    EXEMPTION_REQUESTED,
    AuditEntry,
    DataKeyEntry,
    DeviceEntry,
    ExemptionEntry,
    FleetPolicyEntry,
    PersonEntry,
    RecordEntry,
)

__all__ = [
    "EXEMPTION_APPROVED",
    "EXEMPTION_DENIED",
    "EXEMPTION_REQUESTED",
    "AuditRecord",
    "ExemptionRequest",
    "ExemptionStore",
    "FleetPolicy",
]


@dataclass(frozen=True)
class ExemptionRequest:
    id: int
    device_id: str
    person_id: str
    reason: str
    delete_collected: bool
    status: str
    requested_at: float
    decided_by: str | None
    decided_at: float | None

    @staticmethod
    def from_entry(entry: ExemptionEntry) -> ExemptionRequest:
        return ExemptionRequest(
            id=entry.id,
            device_id=entry.device_id,
            person_id=entry.person_id,
            reason=entry.reason,
            delete_collected=entry.delete_collected,
            status=entry.status,
            requested_at=entry.requested_at,
            decided_by=entry.decided_by,
            decided_at=entry.decided_at,
        )


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    device_id: str | None
    details: str


@dataclass(frozen=True)
class FleetPolicy:
    text: str
    updated_at: float
    updated_by: str


def _person_of(session: Session, device_id: str) -> str | None:
    return session.scalar(select(DeviceEntry.person_id).where(DeviceEntry.device_id == device_id))


class ExemptionStore:
    """Exemption requests, the fleet policy and the audit log, on the MetadataStore's database."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def add_request(
        self, device_id: str, reason: str, delete_collected: bool, at: float, audit: AuditRecord
    ) -> ExemptionRequest:
        """Store a request (for the device's person) and its audit entry in one transaction."""
        with self._sessions.begin() as session:
            person_id = _person_of(session, device_id)
            if person_id is None:
                raise LookupError(f"no device {device_id}")
            entry = ExemptionEntry(
                device_id=device_id,
                person_id=person_id,
                reason=reason,
                delete_collected=delete_collected,
                status=EXEMPTION_REQUESTED,
                requested_at=at,
            )
            session.add(entry)
            session.flush()
            session.add(_audit_entry(audit, details_extra={"request_id": entry.id, "person_id": person_id}))
            return ExemptionRequest.from_entry(entry)

    def devices_of(self, person_id: str) -> list[str]:
        """Every device enrolled for the person, in enrolment order."""
        query = select(DeviceEntry.device_id).where(DeviceEntry.person_id == person_id)
        with self._sessions() as session:
            return list(session.scalars(query.order_by(DeviceEntry.enrolled_at, DeviceEntry.device_id)))

    def person_exists(self, person_id: str) -> bool:
        with self._sessions() as session:
            return session.get(PersonEntry, person_id) is not None

    def get_request(self, request_id: int) -> ExemptionRequest | None:
        with self._sessions() as session:
            entry = session.get(ExemptionEntry, request_id)
            return None if entry is None else ExemptionRequest.from_entry(entry)

    def requests(
        self, status: str | None = None, device_id: str | None = None, person_id: str | None = None
    ) -> list[ExemptionRequest]:
        """Requests by id; ``device_id`` means that device's person's requests (from any device)."""
        query = select(ExemptionEntry).order_by(ExemptionEntry.id)
        if status is not None:
            query = query.where(ExemptionEntry.status == status)
        if device_id is not None:
            owner = select(DeviceEntry.person_id).where(DeviceEntry.device_id == device_id)
            query = query.where(ExemptionEntry.person_id == owner.scalar_subquery())
        if person_id is not None:
            query = query.where(ExemptionEntry.person_id == person_id)
        with self._sessions() as session:
            return [ExemptionRequest.from_entry(entry) for entry in session.scalars(query)]

    def is_exempt(self, device_id: str) -> bool:
        """True if the device's person has an approved exemption (asked from any of their devices)."""
        owner = select(DeviceEntry.person_id).where(DeviceEntry.device_id == device_id)
        query = select(ExemptionEntry.id).where(
            ExemptionEntry.person_id == owner.scalar_subquery(), ExemptionEntry.status == EXEMPTION_APPROVED
        )
        with self._sessions() as session:
            return session.scalar(query.limit(1)) is not None

    def decide(
        self, request_id: int, approve: bool, decided_by: str, at: float, audit: AuditRecord
    ) -> tuple[ExemptionRequest, list[str]] | None:
        """Approve or deny a pending request, with its audit entry, in one transaction.

        An approval with ``delete_collected`` also destroys the person's data key and deletes the record
        rows of all their devices in that transaction, and returns the rows' blob keys (the caller
        deletes the blobs). None if the request is not pending.
        """
        status = EXEMPTION_APPROVED if approve else EXEMPTION_DENIED
        with self._sessions.begin() as session:
            # Conditional update: two admins deciding at once cannot both win.
            changed = session.execute(
                update(ExemptionEntry)
                .where(ExemptionEntry.id == request_id, ExemptionEntry.status == EXEMPTION_REQUESTED)
                .values(status=status, decided_by=decided_by, decided_at=at)
            )
            if getattr(changed, "rowcount", 0) != 1:
                return None
            entry = session.get(ExemptionEntry, request_id)
            assert entry is not None
            session.refresh(entry)
            blob_keys: list[str] = []
            if approve and entry.delete_collected:
                blob_keys = delete_person_data(session, entry.person_id)
            session.add(
                _audit_entry(audit, details_extra={"request_id": request_id, "person_id": entry.person_id})
            )
            return ExemptionRequest.from_entry(entry), blob_keys

    def delete_person_data(self, person_id: str, audit: AuditRecord) -> list[str]:
        """Destroy the person's data key, delete the record rows of all their devices and add the audit
        entry, in one transaction; returns the blob keys of the rows (the caller deletes the blobs)."""
        with self._sessions.begin() as session:
            blob_keys = delete_person_data(session, person_id)
            session.add(_audit_entry(audit, details_extra={"records": len(blob_keys)}))
            return blob_keys

    def delete_record(self, record_id: str, device_id: str) -> str | None:
        """Delete one record row of a device; returns its blob key (None if there was no such row)."""
        with self._sessions.begin() as session:
            entry = session.get(RecordEntry, record_id)
            if entry is None or entry.device_id != device_id:
                return None
            blob_key = entry.blob_key
            session.delete(entry)
            return blob_key

    def append_audit(self, record: AuditRecord) -> None:
        with self._sessions.begin() as session:
            session.add(_audit_entry(record))

    def audit(
        self,
        limit: int = 1000,
        device_id: str | None = None,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[AuditRecord]:
        """The newest ``limit`` entries that match every filter given, oldest first. ``actor`` matches
        any part of the actor (``account:`` finds every portal account)."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if device_id is not None:
            query = query.where(AuditEntry.device_id == device_id)
        if actor:
            query = query.where(AuditEntry.actor.contains(actor, autoescape=True))
        if action:
            query = query.where(AuditEntry.action == action)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        with self._sessions() as session:
            rows = [
                AuditRecord(e.id, e.at, e.actor, e.action, e.device_id, e.details)
                for e in session.scalars(query)
            ]
        return rows[::-1]

    def set_fleet_policy(self, text: str, updated_by: str, at: float, audit: AuditRecord) -> None:
        with self._sessions.begin() as session:
            session.merge(FleetPolicyEntry(id=1, text=text, updated_at=at, updated_by=updated_by))
            session.add(_audit_entry(audit))

    def fleet_policy(self) -> FleetPolicy | None:
        with self._sessions() as session:
            entry = session.get(FleetPolicyEntry, 1)
            return None if entry is None else FleetPolicy(entry.text, entry.updated_at, entry.updated_by)


def delete_person_data(session: Session, person_id: str) -> list[str]:
    """In the caller's transaction: the data key first (crypto-shredding: copies of the blobs in backups
    become unreadable), then every record row of the person; returns the rows' blob keys."""
    session.execute(delete(DataKeyEntry).where(DataKeyEntry.person_id == person_id))
    blob_keys = list(session.scalars(select(RecordEntry.blob_key).where(RecordEntry.person_id == person_id)))
    session.execute(delete(RecordEntry).where(RecordEntry.person_id == person_id))
    return blob_keys


def _audit_entry(record: AuditRecord, details_extra: dict[str, Any] | None = None) -> AuditEntry:
    details = record.details
    if details_extra:
        merged = {**json.loads(details or "{}"), **details_extra}
        details = json.dumps(merged, sort_keys=True)
    return AuditEntry(
        at=record.at, actor=record.actor, action=record.action, device_id=record.device_id, details=details
    )
