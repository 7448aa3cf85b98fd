"""Routes of the recording notice: a device reports its person's acceptance; admins list them."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from demotrace.collector.bodies import read_body
from demotrace.collector.consent import (
    MAX_NOTICE_ACK_BODY_BYTES,
    ConsentService,
    NoticeAckBody,
    parse_notice_ack,
)
from demotrace.collector.guards import Services
from demotrace.collector.openapi import json_body, refusals
from demotrace.protocol import ADMIN_NOTICE_ACKS_PATH, DEVICE_NOTICE_ACK_PATH


def add_consent_routes(app: FastAPI, services: Services, consent: ConsentService) -> None:
    ingest, exemptions, guards = services.ingest, services.exemptions, services.guards

    @app.post(
        DEVICE_NOTICE_ACK_PATH,
        status_code=201,
        openapi_extra=json_body(NoticeAckBody),
        responses=refusals(400, 401, 404, 408, 413, 429),
    )
    async def notice_ack(request: Request) -> dict[str, object]:
        """The device's person accepted the recording notice (device token); audited."""
        device_id = await guards.device(request, ingest)
        ack = parse_notice_ack(await read_body(request, MAX_NOTICE_ACK_BODY_BYTES, guards.pace))
        return await run_in_threadpool(consent.record_ack, device_id, ack)

    @app.get(ADMIN_NOTICE_ACKS_PATH, responses=refusals(400, 401, 429))
    async def notice_acks(request: Request) -> list[dict[str, object]]:
        """Each device's newest notice acceptance (admin)."""
        await guards.admin(request, exemptions.admin)
        return await run_in_threadpool(consent.list_acks)
