"""The rule that keeps the portal from becoming a tool to watch people: activity figures are shown only
as aggregates over at least MIN_COHORT_PEOPLE distinct people. There is no per-person activity number
(hours recorded, actions, bytes) anywhere; a cohort too small to hide one person is refused here, in
the service layer, whatever page or API asks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from demotrace.collector.errors import CollectorError
from demotrace.collector.store.fleet_store import DayVolume

MIN_COHORT_PEOPLE = 10


class CohortTooSmall(CollectorError):
    """Aggregates over fewer than MIN_COHORT_PEOPLE people would tell about individuals."""

    status = 403
    code = "cohort_too_small"


def require_cohort(people: int, what: str) -> None:
    """Refuse (CohortTooSmall) to show ``what`` over fewer than MIN_COHORT_PEOPLE people."""
    if people < MIN_COHORT_PEOPLE:
        raise CohortTooSmall(
            f"{what} is shown only over at least {MIN_COHORT_PEOPLE} people; this cohort has {people}"
        )


@dataclass(frozen=True)
class DayAggregate:
    """One day's fleet volume, or None figures where fewer than MIN_COHORT_PEOPLE people sent data."""

    day_start: float
    records: int | None
    bytes: int | None

    @property
    def suppressed(self) -> bool:
        return self.records is None


def daily_aggregates(days: Sequence[DayVolume]) -> list[DayAggregate]:
    """Each day's totals, suppressed for days behind which fewer than MIN_COHORT_PEOPLE people stand."""
    return [
        DayAggregate(day.day_start, day.records, day.bytes)
        if day.people >= MIN_COHORT_PEOPLE
        else DayAggregate(day.day_start, None, None)
        for day in days
    ]
