"""One person's devices and sessions, from the metadata alone (no blob read): what the employee portal
lists. Every query is by person: nothing here can answer about someone else's device or session."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from demotrace.collector.store.metadata import StoredRecord
from demotrace.collector.store.tables import DeviceEntry, RecordEntry


@dataclass(frozen=True)
class PersonDevice:
    device_id: str
    name: str
    enrolled_at: float
    last_upload: float | None  # collector clock: when its newest record arrived
    records: int
    last_report: float | None  # collector clock: its last health report
    revoked: bool


@dataclass(frozen=True)
class PersonSession:
    device_id: str
    session_id: str
    start: float | None  # device wall clock
    end: float | None
    batches: int
    frames: int
    bytes: int


class PersonStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def devices(self, person_id: str) -> list[PersonDevice]:
        uploads = (
            select(
                RecordEntry.device_id,
                func.max(RecordEntry.received_at).label("last"),
                func.count().label("n"),
            )
            .where(RecordEntry.person_id == person_id)
            .group_by(RecordEntry.device_id)
            .subquery()
        )
        query = (
            select(
                DeviceEntry.device_id,
                DeviceEntry.name,
                DeviceEntry.enrolled_at,
                uploads.c.last,
                uploads.c.n,
                DeviceEntry.last_report_at,
                DeviceEntry.revoked_at,
            )
            .outerjoin(uploads, uploads.c.device_id == DeviceEntry.device_id)
            .where(DeviceEntry.person_id == person_id)
            .order_by(DeviceEntry.enrolled_at, DeviceEntry.device_id)
        )
        with self._sessions() as session:
            return [
                PersonDevice(
                    str(device),
                    str(name),
                    float(enrolled),
                    last,
                    int(count or 0),
                    report,
                    revoked is not None,
                )
                for device, name, enrolled, last, count, report, revoked in session.execute(query)
            ]

    def sessions(self, person_id: str) -> list[PersonSession]:
        """The person's sessions, newest first."""
        query = (
            select(
                RecordEntry.device_id,
                RecordEntry.session_id,
                func.min(RecordEntry.wall),
                func.max(RecordEntry.wall),
                func.count().filter(RecordEntry.kind == "batch"),
                func.count().filter(RecordEntry.kind == "frame"),
                func.sum(RecordEntry.size),
            )
            .where(RecordEntry.person_id == person_id)
            .group_by(RecordEntry.device_id, RecordEntry.session_id)
        )
        with self._sessions() as session:
            rows = [
                PersonSession(str(d), str(s), start, end, int(b), int(f), int(n or 0))
                for d, s, start, end, b, f, n in session.execute(query)
            ]
        return sorted(rows, key=lambda row: (row.start or 0.0, row.session_id), reverse=True)

    def session_records(self, person_id: str, device_id: str, session_id: str) -> list[StoredRecord]:
        """The session's rows in reading order (batches by seq, frames by time); empty if it is not the
        person's."""
        query = (
            select(RecordEntry)
            .where(
                and_(
                    RecordEntry.person_id == person_id,
                    RecordEntry.device_id == device_id,
                    RecordEntry.session_id == session_id,
                )
            )
            .order_by(RecordEntry.seq, RecordEntry.t, RecordEntry.record_id)
        )
        with self._sessions() as session:
            return [StoredRecord.from_entry(entry) for entry in session.scalars(query)]

    def record(self, person_id: str, record_id: str) -> StoredRecord | None:
        """The row, only if it is the person's."""
        with self._sessions() as session:
            entry = session.get(RecordEntry, record_id)
            if entry is None or entry.person_id != person_id:
                return None
            return StoredRecord.from_entry(entry)
