"""Upload routes: one record in one PUT, or a large one in resumable chunks.

Each upload body passes, in order: the device's token and request rate, its exemption (refused before
the body is read), the collector-wide ingest slots (shed before the body is read), the device's own
concurrency, the minimum body rate and the memory budget (charged as bytes arrive), and only then the
ingest slot that decompresses, checks and stores it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from demotrace.collector.bodies import discard_body, read_body
from demotrace.collector.errors import Exempt, PayloadTooLarge, UnsupportedMediaType
from demotrace.collector.guards import Services
from demotrace.collector.ingest import StoreOutcome
from demotrace.collector.openapi import json_body, raw_body, refusals
from demotrace.collector.uploads import (
    MAX_UPLOAD_CHUNK_BYTES,
    MAX_UPLOAD_REQUEST_BYTES,
    UploadRequest,
    UploadStatus,
    parse_content_range,
    parse_upload_request,
)
from demotrace.protocol import RECORD_MEDIA_TYPE, RECORD_PATH, UPLOAD_PATH, UPLOADS_PATH

_UPLOAD_REFUSALS = (400, 401, 403, 408, 409, 413, 429, 503)


async def _refuse_unread(
    services: Services, request: Request, limit: int, check: Callable[[str], None], device_id: str
) -> None:
    """Run ``check`` (which raises Exempt for an exempt device) before the body is read; on refusal,
    drop the body first so the device reads its 403 and stops, rather than retrying a reset link."""
    try:
        await run_in_threadpool(check, device_id)
    except Exempt:
        await discard_body(request, limit, services.guards.pace)
        raise


async def _store_body(
    services: Services, request: Request, device_id: str, limit: int, store: Callable[..., object]
) -> object:
    """Read an upload body within every bound, then run ``store(body, memory)`` in an ingest slot."""
    guards = services.guards
    guards.ingest_slots.check_free()  # shedding load must not cost reading the body
    guards.device_uploads.acquire(device_id, "uploads")
    try:
        with guards.memory.reservation() as memory:
            body = await read_body(request, limit, guards.pace, memory)
            guards.ingest_slots.acquire()
            try:
                return await run_in_threadpool(store, body, memory)
            finally:
                guards.ingest_slots.release()
    finally:
        guards.device_uploads.release(device_id)


def store_outcome_response(outcome: StoreOutcome) -> JSONResponse:
    return JSONResponse(
        {"record_id": outcome.record_id, "status": "created" if outcome.created else "already_stored"},
        status_code=201 if outcome.created else 200,
    )


def _upload_status_response(status: UploadStatus, status_code: int = 200) -> JSONResponse:
    return JSONResponse(
        {
            "upload_id": status.upload_id,
            "record_id": status.record_id,
            "size": status.size,
            "received": status.received,
        },
        status_code=status_code,
    )


def add_upload_routes(app: FastAPI, services: Services) -> None:
    ingest, uploads, guards = services.ingest, services.uploads, services.guards

    @app.put(
        RECORD_PATH,
        openapi_extra=raw_body(RECORD_MEDIA_TYPE),
        responses=refusals(*_UPLOAD_REFUSALS, 415),
    )
    async def put_record(record_id: str, request: Request) -> Response:
        # Authenticate before reading a byte of the body: strangers cost us nothing.
        device_id = await guards.device(request, ingest)
        await _refuse_unread(
            services, request, ingest.max_body_bytes, services.upload_guard.check_upload_allowed, device_id
        )
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != RECORD_MEDIA_TYPE:
            raise UnsupportedMediaType(f"Content-Type must be {RECORD_MEDIA_TYPE}")
        outcome = await _store_body(
            services,
            request,
            device_id,
            ingest.max_body_bytes,
            lambda body, memory: ingest.store_record(device_id, record_id, body, memory),
        )
        assert isinstance(outcome, StoreOutcome)
        return store_outcome_response(outcome)

    @app.post(
        UPLOADS_PATH, openapi_extra=json_body(UploadRequest), responses=refusals(400, 401, 403, 413, 429)
    )
    async def begin_upload(request: Request) -> Response:
        device_id = await guards.device(request, ingest)
        body = await read_body(request, MAX_UPLOAD_REQUEST_BYTES, guards.pace)
        upload_request = parse_upload_request(body)
        status = await run_in_threadpool(uploads.begin, device_id, upload_request)
        return _upload_status_response(status, 201 if status.created else 200)

    @app.get(UPLOAD_PATH, responses=refusals(401, 403, 404, 429))
    async def upload_status(upload_id: str, request: Request) -> Response:
        device_id = await guards.device(request, ingest)
        return _upload_status_response(await run_in_threadpool(uploads.status, device_id, upload_id))

    @app.put(
        UPLOAD_PATH,
        openapi_extra=raw_body("application/octet-stream"),
        responses=refusals(*_UPLOAD_REFUSALS, 404, 416),
    )
    async def put_upload_chunk(upload_id: str, request: Request) -> Response:
        device_id = await guards.device(request, ingest)
        content_range = parse_content_range(request.headers.get("content-range"))
        if content_range.length > MAX_UPLOAD_CHUNK_BYTES:
            raise PayloadTooLarge(f"chunks may be at most {MAX_UPLOAD_CHUNK_BYTES} bytes")
        await _refuse_unread(services, request, content_range.length, uploads.refuse_if_exempt, device_id)
        answer = await _store_body(
            services,
            request,
            device_id,
            content_range.length,
            lambda chunk, _memory: uploads.append(device_id, upload_id, content_range, chunk),
        )
        if isinstance(answer, StoreOutcome):
            return store_outcome_response(answer)
        assert isinstance(answer, UploadStatus)
        return _upload_status_response(answer, 202)
