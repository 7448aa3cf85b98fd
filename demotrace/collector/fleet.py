"""Fleet health for admins and fleet volumes for admins and data engineers.

Health is per device but never about activity: agent version, when it was last heard from, its spool
backlog and last error, and whether it is active, exempt or revoked. Volumes (records and bytes per day)
exist only fleet-wide, and only over cohorts of at least MIN_COHORT_PEOPLE people (cohorts.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from demotrace.collector.cohorts import DayAggregate, daily_aggregates, require_cohort
from demotrace.collector.store.fleet_store import SECONDS_PER_DAY, DeviceHealthRow, FleetStore

VOLUME_DAYS = 14


@dataclass(frozen=True)
class DeviceHealth:
    device_id: str
    name: str
    person_id: str
    enrolled_at: float
    agent_version: str | None
    last_seen: float | None
    spool_backlog: int | None
    last_error: str | None
    status: str  # active, exempt or revoked


@dataclass(frozen=True)
class FleetVolumes:
    """Fleet-wide figures a cohort of ``people`` (at least MIN_COHORT_PEOPLE) stands behind."""

    people: int
    devices: int
    days: list[DayAggregate]

    @property
    def bytes_per_day(self) -> float | None:
        shown = [day.bytes for day in self.days if day.bytes is not None]
        return sum(shown) / len(shown) if shown else None


def _status(row: DeviceHealthRow) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "exempt" if row.exempt else "active"


def _health(row: DeviceHealthRow) -> DeviceHealth:
    heard = [at for at in (row.last_report_at, row.last_upload_at) if at is not None]
    return DeviceHealth(
        device_id=row.device_id,
        name=row.name,
        person_id=row.person_id,
        enrolled_at=row.enrolled_at,
        agent_version=row.agent_version,
        last_seen=max(heard) if heard else None,
        spool_backlog=row.spool_backlog,
        last_error=row.last_error,
        status=_status(row),
    )


class FleetService:
    def __init__(self, store: FleetStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def device_health(self) -> list[DeviceHealth]:
        return [_health(row) for row in self.store.device_health()]

    def volumes(self, days: int = VOLUME_DAYS) -> FleetVolumes:
        """Fleet-wide volumes of the last ``days`` days; CohortTooSmall when the fleet has fewer than
        MIN_COHORT_PEOPLE people (each day is suppressed on its own when fewer sent anything)."""
        people = self.store.people_count()
        require_cohort(people, "fleet activity")
        today = self.clock() // SECONDS_PER_DAY * SECONDS_PER_DAY
        since = today - (days - 1) * SECONDS_PER_DAY
        return FleetVolumes(
            people=people,
            devices=self.store.device_count(),
            days=daily_aggregates(self.store.daily_volumes(since)),
        )
