"""The queries behind the fleet pages: each device's health, and fleet-wide volumes by day with the
number of distinct people behind each day (so that small cohorts can be refused: see cohorts.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from demotrace.collector.store.tables import (
    EXEMPTION_APPROVED,
    DeviceEntry,
    ExemptionEntry,
    PersonEntry,
    RecordEntry,
)

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class DeviceHealthRow:
    device_id: str
    name: str
    person_id: str
    enrolled_at: float
    agent_version: str | None
    spool_backlog: int | None
    last_error: str | None
    last_report_at: float | None
    last_upload_at: float | None
    revoked_at: float | None
    exempt: bool


@dataclass(frozen=True)
class DayVolume:
    """One UTC day of the whole fleet's uploads: how many people sent anything, and the totals."""

    day_start: float
    people: int
    records: int
    bytes: int


class FleetStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def set_health(
        self,
        device_id: str,
        at: float,
        agent_version: str | None,
        spool_backlog: int | None,
        last_error: str | None,
    ) -> None:
        """Keep what the device reported about itself (a field it did not send keeps its last value)."""
        values: dict[str, object] = {"last_report_at": at, "last_error": last_error}
        if agent_version is not None:
            values["agent_version"] = agent_version
        if spool_backlog is not None:
            values["spool_backlog"] = spool_backlog
        with self._sessions.begin() as session:
            session.execute(update(DeviceEntry).where(DeviceEntry.device_id == device_id).values(**values))

    def device_health(self) -> list[DeviceHealthRow]:
        last_upload = (
            select(RecordEntry.device_id, func.max(RecordEntry.received_at).label("at"))
            .group_by(RecordEntry.device_id)
            .subquery()
        )
        exempt_people = select(ExemptionEntry.person_id).where(ExemptionEntry.status == EXEMPTION_APPROVED)
        query = (
            select(DeviceEntry, last_upload.c.at, DeviceEntry.person_id.in_(exempt_people))
            .outerjoin(last_upload, last_upload.c.device_id == DeviceEntry.device_id)
            .order_by(DeviceEntry.enrolled_at)
        )
        with self._sessions() as session:
            return [
                DeviceHealthRow(
                    device_id=device.device_id,
                    name=device.name,
                    person_id=device.person_id,
                    enrolled_at=device.enrolled_at,
                    agent_version=device.agent_version,
                    spool_backlog=device.spool_backlog,
                    last_error=device.last_error,
                    last_report_at=device.last_report_at,
                    last_upload_at=uploaded_at,
                    revoked_at=device.revoked_at,
                    exempt=bool(exempt),
                )
                for device, uploaded_at, exempt in session.execute(query)
            ]

    def people_count(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(PersonEntry)) or 0)

    def device_count(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(DeviceEntry)) or 0)

    def daily_volumes(self, since: float) -> list[DayVolume]:
        """Per UTC day since ``since``: distinct people, records and stored bytes, oldest day first."""
        day = func.floor(RecordEntry.received_at / SECONDS_PER_DAY)
        query = (
            select(
                day,
                func.count(func.distinct(RecordEntry.person_id)),
                func.count(),
                func.coalesce(func.sum(RecordEntry.blob_size), 0),
            )
            .where(RecordEntry.received_at >= since)
            .group_by(day)
            .order_by(day)
        )
        with self._sessions() as session:
            return [
                DayVolume(float(d) * SECONDS_PER_DAY, int(p), int(r), int(b))
                for d, p, r, b in session.execute(query)
            ]
