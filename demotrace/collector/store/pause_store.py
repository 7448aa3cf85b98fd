"""Pauses on the collector's database: those asked for on the portal, and those devices report."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from demotrace.collector.store.exemption_store import AuditRecord, _audit_entry
from demotrace.collector.store.tables import DeviceEntry, PauseEventEntry, PauseRequestEntry


@dataclass(frozen=True)
class PauseRequest:
    id: int
    person_id: str
    action: str  # "pause" or "resume"
    requested_at: float
    paused_until: float | None


@dataclass(frozen=True)
class PauseEvent:
    device_id: str
    kind: str  # "paused", "resumed", "expired"
    at: float
    paused_until: float | None
    request_id: int | None
    received_at: float


def _request(entry: PauseRequestEntry) -> PauseRequest:
    return PauseRequest(entry.id, entry.person_id, entry.action, entry.requested_at, entry.paused_until)


def _event(entry: PauseEventEntry) -> PauseEvent:
    return PauseEvent(
        entry.device_id, entry.kind, entry.at, entry.paused_until, entry.request_id, entry.received_at
    )


class PauseStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def add_request(
        self, person_id: str, action: str, at: float, paused_until: float | None, audit: AuditRecord
    ) -> PauseRequest:
        with self._sessions.begin() as session:
            entry = PauseRequestEntry(
                person_id=person_id, action=action, requested_at=at, paused_until=paused_until
            )
            session.add(entry)
            session.flush()
            session.add(_audit_entry(audit, details_extra={"pause_request_id": entry.id}))
            return _request(entry)

    def latest_request(self, person_id: str) -> PauseRequest | None:
        query = (
            select(PauseRequestEntry)
            .where(PauseRequestEntry.person_id == person_id)
            .order_by(PauseRequestEntry.id.desc())
            .limit(1)
        )
        with self._sessions() as session:
            entry = session.scalar(query)
            return None if entry is None else _request(entry)

    def applied_request_id(self, device_id: str) -> int | None:
        """The newest portal request this device has reported applying."""
        query = select(func.max(PauseEventEntry.request_id)).where(PauseEventEntry.device_id == device_id)
        with self._sessions() as session:
            value = session.scalar(query)
            return None if value is None else int(value)

    def add_events(self, device_id: str, events: list[PauseEvent]) -> None:
        with self._sessions.begin() as session:
            person_id = session.scalar(
                select(DeviceEntry.person_id).where(DeviceEntry.device_id == device_id)
            )
            if person_id is None:
                raise LookupError(f"no device {device_id}")
            for event in events:
                session.add(
                    PauseEventEntry(
                        device_id=device_id,
                        person_id=person_id,
                        kind=event.kind,
                        at=event.at,
                        paused_until=event.paused_until,
                        request_id=event.request_id,
                        received_at=event.received_at,
                    )
                )

    def events(self, person_id: str, limit: int = 200) -> list[PauseEvent]:
        """The person's newest ``limit`` reported events, newest first."""
        query = (
            select(PauseEventEntry)
            .where(PauseEventEntry.person_id == person_id)
            .order_by(PauseEventEntry.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            return [_event(entry) for entry in session.scalars(query)]

    def latest_event(self, device_id: str) -> PauseEvent | None:
        query = (
            select(PauseEventEntry)
            .where(PauseEventEntry.device_id == device_id)
            .order_by(PauseEventEntry.id.desc())
            .limit(1)
        )
        with self._sessions() as session:
            entry = session.scalar(query)
            return None if entry is None else _event(entry)

    def requests(self, person_id: str, limit: int = 200) -> list[PauseRequest]:
        """The person's newest ``limit`` portal requests, newest first."""
        query = (
            select(PauseRequestEntry)
            .where(PauseRequestEntry.person_id == person_id)
            .order_by(PauseRequestEntry.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            return [_request(entry) for entry in session.scalars(query)]
