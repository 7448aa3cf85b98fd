"""Exemption, policy, device and people routes: device requests and reports, and the admin API over them.

Admins authenticate with an admin token (admin_auth.py); an address with too many failed attempts is
told to wait (429) before its token is even checked.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from demotrace.collector.bodies import read_body
from demotrace.collector.devices import (
    MAX_REPORT_BODY_BYTES,
    DeviceAdmin,
    DeviceReportBody,
    parse_device_report,
)
from demotrace.collector.errors import NotFound
from demotrace.collector.exemptions import (
    MAX_EXEMPTION_BODY_BYTES,
    MAX_POLICY_BYTES,
    ExemptionAppliedBody,
    ExemptionRequestBody,
    parse_exemption_applied,
    parse_exemption_request,
)
from demotrace.collector.guards import Services
from demotrace.collector.openapi import json_body, raw_body, refusals
from demotrace.collector.pauses import (
    MAX_PAUSE_EVENTS_BODY_BYTES,
    PauseEventsBody,
    PauseService,
    parse_pause_events,
)
from demotrace.collector.people import PeopleService
from demotrace.collector.retention import RetentionService
from demotrace.protocol import (
    ADMIN_AUDIT_PATH,
    ADMIN_DEVICE_REVOKE_PATH,
    ADMIN_DEVICES_PATH,
    ADMIN_EXEMPTION_DECISION_PATH,
    ADMIN_EXEMPTIONS_PATH,
    ADMIN_PEOPLE_PATH,
    ADMIN_PERSON_DELETE_PATH,
    ADMIN_POLICY_PATH,
    ADMIN_RETENTION_RUN_PATH,
    DEVICE_EXEMPTION_APPLIED_PATH,
    DEVICE_PAUSES_PATH,
    DEVICE_POLICY_PATH,
    DEVICE_REPORT_PATH,
    EXEMPTIONS_PATH,
)

# The {decision} of ADMIN_EXEMPTION_DECISION_PATH, and whether it approves.
_APPROVES = {"approve": True, "deny": False}
_ADMIN_REFUSALS = (400, 401, 429)


def add_device_routes(app: FastAPI, services: Services, devices: DeviceAdmin, pauses: PauseService) -> None:
    """What a device asks about itself: its policy (with any pause asked for on the portal), an
    exemption, and its reports (health, pauses)."""
    ingest, exemptions, guards = services.ingest, services.exemptions, services.guards

    @app.post(
        EXEMPTIONS_PATH,
        status_code=201,
        openapi_extra=json_body(ExemptionRequestBody),
        responses=refusals(400, 401, 408, 409, 413, 429),
    )
    async def request_exemption(request: Request) -> dict[str, object]:
        device_id = await guards.device(request, ingest)
        body = parse_exemption_request(await read_body(request, MAX_EXEMPTION_BODY_BYTES, guards.pace))
        return await run_in_threadpool(exemptions.request_exemption, device_id, body)

    @app.get(DEVICE_POLICY_PATH, responses=refusals(401, 429))
    async def device_policy(request: Request) -> dict[str, object]:
        device_id = await guards.device(request, ingest)
        answer = await run_in_threadpool(exemptions.device_policy, device_id)
        answer["pause_request"] = await run_in_threadpool(pauses.for_device, device_id)
        return answer

    @app.post(
        DEVICE_PAUSES_PATH,
        openapi_extra=json_body(PauseEventsBody),
        responses=refusals(400, 401, 408, 413, 429),
    )
    async def device_pauses(request: Request) -> dict[str, object]:
        device_id = await guards.device(request, ingest)
        report = parse_pause_events(await read_body(request, MAX_PAUSE_EVENTS_BODY_BYTES, guards.pace))
        return await run_in_threadpool(pauses.record_events, device_id, report)

    @app.post(
        DEVICE_EXEMPTION_APPLIED_PATH,
        openapi_extra=json_body(ExemptionAppliedBody),
        responses=refusals(400, 401, 408, 409, 413, 429),
    )
    async def exemption_applied(request: Request) -> dict[str, object]:
        device_id = await guards.device(request, ingest)
        report = parse_exemption_applied(await read_body(request, MAX_EXEMPTION_BODY_BYTES, guards.pace))
        return await run_in_threadpool(exemptions.report_applied, device_id, report)

    @app.post(
        DEVICE_REPORT_PATH,
        openapi_extra=json_body(DeviceReportBody),
        responses=refusals(400, 401, 408, 413, 429),
    )
    async def device_report(request: Request) -> dict[str, object]:
        device_id = await guards.device(request, ingest)
        report = parse_device_report(await read_body(request, MAX_REPORT_BODY_BYTES, guards.pace))
        return await run_in_threadpool(devices.report, device_id, report)


def add_admin_routes(app: FastAPI, services: Services, devices: DeviceAdmin) -> None:
    """Exemption decisions, the fleet policy, the audit log and device revocation."""
    exemptions, guards = services.exemptions, services.guards

    async def admin_of(request: Request) -> str:
        return await guards.admin(request, exemptions.admin)

    @app.get(ADMIN_EXEMPTIONS_PATH, responses=refusals(*_ADMIN_REFUSALS))
    async def list_exemptions(request: Request, status: str | None = None) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(exemptions.list_requests, status)

    @app.post(ADMIN_EXEMPTION_DECISION_PATH, responses=refusals(*_ADMIN_REFUSALS, 404, 409))
    async def decide_exemption(request_id: int, decision: str, request: Request) -> dict[str, object]:
        if decision not in _APPROVES:  # answered like any unknown path: before the admin check
            raise NotFound(f"no decision {decision!r}: approve or deny")
        admin = await admin_of(request)
        return await run_in_threadpool(exemptions.decide, request_id, _APPROVES[decision], admin)

    @app.put(
        ADMIN_POLICY_PATH,
        openapi_extra=raw_body("application/toml", text=True),
        responses=refusals(*_ADMIN_REFUSALS, 408, 409, 413),
    )
    async def set_policy(request: Request, confirm_widening: bool = False) -> dict[str, object]:
        admin = await admin_of(request)
        body = await read_body(request, MAX_POLICY_BYTES, guards.pace)
        return await run_in_threadpool(exemptions.set_fleet_policy, body, admin, confirm_widening)

    @app.get(ADMIN_POLICY_PATH, responses=refusals(*_ADMIN_REFUSALS))
    async def get_policy(request: Request) -> dict[str, object]:
        await admin_of(request)
        text, source, updated_at = await run_in_threadpool(exemptions.fleet_policy_text)
        return {"policy": text, "policy_source": source, "policy_updated_at": updated_at}

    @app.get(ADMIN_AUDIT_PATH, responses=refusals(*_ADMIN_REFUSALS))
    async def audit_log(
        request: Request,
        limit: int = 1000,
        device_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(
            lambda: exemptions.audit(limit, device_id, actor=actor, action=action, since=since, until=until)
        )

    @app.get(ADMIN_DEVICES_PATH, responses=refusals(*_ADMIN_REFUSALS))
    async def list_devices(request: Request) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(devices.list_devices)

    @app.post(ADMIN_DEVICE_REVOKE_PATH, responses=refusals(*_ADMIN_REFUSALS, 404))
    async def revoke_device(device_id: str, request: Request) -> dict[str, object]:
        admin = await admin_of(request)
        return await run_in_threadpool(devices.revoke, device_id, admin)


def add_people_routes(
    app: FastAPI, services: Services, people: PeopleService, retention: RetentionService
) -> None:
    """People and the deletion of their data; retention on demand (admins)."""
    exemptions, guards = services.exemptions, services.guards
    app.state.people = people
    app.state.retention = retention

    async def admin_of(request: Request) -> str:
        return await guards.admin(request, exemptions.admin)

    @app.get(ADMIN_PEOPLE_PATH, responses=refusals(*_ADMIN_REFUSALS))
    async def list_people(request: Request) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(people.list_people)

    @app.post(ADMIN_PERSON_DELETE_PATH, responses=refusals(*_ADMIN_REFUSALS, 404))
    async def delete_person(person_id: str, request: Request) -> dict[str, object]:
        admin = await admin_of(request)
        return await run_in_threadpool(people.delete_person_data, person_id, admin)

    @app.post(ADMIN_RETENTION_RUN_PATH, responses=refusals(*_ADMIN_REFUSALS))
    async def run_retention(request: Request) -> dict[str, object]:
        admin = await admin_of(request)
        result = await run_in_threadpool(retention.sweep, admin)
        return {
            "retention_days": result.retention_days,
            "cutoff": result.cutoff,
            "deleted_records": result.records,
            "deleted_sessions": result.sessions,
            "deleted_blobs": result.blobs,
        }
