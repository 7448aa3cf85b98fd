"""The admin's fleet health (with device revocation) and audit log pages, and the data engineer's page.

Per device the fleet page shows health only (version, last heard from, spool backlog, last error,
status); volumes are fleet-wide over cohorts of at least MIN_COHORT_PEOPLE (cohorts.py). The data
engineer's page shows no identity at all: no person, device, host or account names.
"""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from demotrace.collector.accounts import Account, Role
from demotrace.collector.cohorts import MIN_COHORT_PEOPLE, CohortTooSmall
from demotrace.collector.devices import DeviceAdmin
from demotrace.collector.errors import NotFound
from demotrace.collector.exemptions import ExemptionService
from demotrace.collector.fleet import FleetService, FleetVolumes
from demotrace.collector.portal.auth import checked_form, require_role
from demotrace.collector.portal.pages_admin import AdminAccount, notices_of, redirect_with
from demotrace.collector.portal.render import render

EngineerAccount = Annotated[Account, Depends(require_role(Role.DATA_ENGINEER))]
AUDIT_PAGE_ROWS = 200


def _day_start(text: str) -> float | None:
    """A YYYY-MM-DD date from a filter field as the UTC time it starts; None when empty; ValueError."""
    if not text:
        return None
    day = datetime.date.fromisoformat(text)
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


def _volumes(fleet: FleetService) -> tuple[FleetVolumes | None, str | None]:
    try:
        return fleet.volumes(), None
    except CohortTooSmall as refused:
        return None, refused.message


def add_fleet_pages(app: FastAPI, devices: DeviceAdmin, exemptions: ExemptionService) -> None:
    fleet = devices.fleet()

    @app.get("/admin/fleet", include_in_schema=False)
    async def fleet_health(request: Request, account: AdminAccount) -> Response:
        health = await run_in_threadpool(fleet.device_health)
        volumes, withheld = await run_in_threadpool(_volumes, fleet)
        return render(
            request,
            "admin_fleet.html",
            account,
            title="Fleet",
            devices=health,
            volumes=volumes,
            withheld=withheld,
            notices=notices_of(request),
        )

    @app.post("/admin/fleet/{device_id}/revoke", include_in_schema=False)
    async def revoke(request: Request, device_id: str, account: AdminAccount) -> Response:
        await checked_form(request)
        try:
            await run_in_threadpool(devices.revoke, device_id, account.actor)
        except NotFound:
            return redirect_with("/admin/fleet", "no_such")
        return redirect_with("/admin/fleet", "revoked")

    @app.get("/admin/audit", include_in_schema=False)
    async def audit_log(
        request: Request,
        account: AdminAccount,
        actor: str = "",
        action: str = "",
        since: str = "",
        until: str = "",
    ) -> Response:
        notices: list[tuple[str, str]] = []
        try:
            start, end = _day_start(since), _day_start(until)
        except ValueError:
            start = end = None
            notices.append(("error", "Dates are written YYYY-MM-DD."))
        if end is not None:
            end += 86_400  # "until" includes that whole day
        entries = await run_in_threadpool(
            lambda: exemptions.audit(
                AUDIT_PAGE_ROWS, actor=actor[:256] or None, action=action[:64] or None, since=start, until=end
            )
        )
        return render(
            request,
            "admin_audit.html",
            account,
            title="Audit log",
            entries=entries[::-1],
            filters={"actor": actor, "action": action, "since": since, "until": until},
            rows=AUDIT_PAGE_ROWS,
            notices=notices,
        )

    @app.get("/data", include_in_schema=False)
    async def data_engineering(request: Request, account: EngineerAccount) -> Response:
        volumes, withheld = await run_in_threadpool(_volumes, fleet)
        return render(
            request,
            "data.html",
            account,
            title="Datasets",
            volumes=volumes,
            withheld=withheld,
            min_cohort=MIN_COHORT_PEOPLE,
        )
