"""The collector's HTTP layer: routes, body limits and error translation over the services
(ingest.py, uploads.py, exemptions.py).

Wire protocol (v1):
- ``POST /v1/enroll`` JSON ``{"device_name": ...}`` (+ ``X-Enrollment-Secret`` if the server has one)
  → 201 ``{"device_id", "token"}``
- ``PUT /v1/records/{record_id}`` with ``Authorization: Bearer <token>`` and
  ``Content-Type: application/x-demotrace-record``, body the zstd-compressed MessagePack of one record
  → 201 stored, 200 already stored; 400/401/409/413/415 with ``{"error", "detail"}``
- ``GET /v1/health`` → 200 ``{"status": "ok"}``
- Resumable upload of a large record: ``POST /v1/uploads`` JSON ``{"record_id", "size", "sha256"}`` (size
  and SHA-256 of the compressed body) → 201 opened / 200 already open, ``{"upload_id", "record_id",
  "size", "received"}``; ``PUT /v1/uploads/{upload_id}`` with ``Content-Range: bytes START-END/SIZE``
  → 202 with the new ``received``, or, for the chunk that completes it, the answer of
  ``PUT /v1/records/{record_id}`` (201/200); ``bytes */SIZE`` with no body completes an upload that has
  every byte; 416 when START is not ``received``; ``GET /v1/uploads/{upload_id}`` → the status.
- Exemptions (device token): ``POST /v1/exemptions`` JSON ``{"reason", "delete_collected"}`` → 201;
  ``GET /v1/device/policy`` → ``{"policy": TOML, "exempt", "exemption_status", ...}``;
  ``POST /v1/device/exemption-applied`` ``{"deleted_unsent"}``. An exempt device's uploads (records,
  upload sessions and their chunks) → 403 ``exempt``, and its unfinished upload sessions are discarded.
- When ``max_concurrent_ingests`` bodies are already being stored, a record or chunk PUT → 503 ``busy``
  with ``Retry-After`` (seconds), before its body is read.
- Admin (``Authorization: Bearer <admin token>``, optional ``X-Admin-Name``):
  ``GET /v1/admin/exemptions``, ``POST /v1/admin/exemptions/{id}/approve|deny``,
  ``PUT|GET /v1/admin/policy`` (TOML), ``GET /v1/admin/audit``, ``GET /v1/admin/people``,
  ``POST /v1/admin/people/{person_id}/delete`` (everything of that person's devices, key first),
  ``POST /v1/admin/retention/run`` (a retention sweep now; it also runs on a schedule).
- Enrolment may name the person the device is for: ``{"device_name", "person_id"}`` (a pseudonym);
  without one the device gets a person of its own. Exemptions and deletions cover a person's devices.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from demotrace import __version__
from demotrace.collector.errors import (
    BadRequest,
    Busy,
    CollectorError,
    Exempt,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from demotrace.collector.exemptions import (
    MAX_EXEMPTION_BODY_BYTES,
    MAX_POLICY_BYTES,
    ExemptionService,
    admin_name,
    parse_exemption_applied,
    parse_exemption_request,
)
from demotrace.collector.ingest import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENT_INGESTS,
    DEFAULT_MAX_RECORD_BYTES,
    MAX_ENROLL_BODY_BYTES,
    IngestService,
    IngestSlots,
    StoreOutcome,
    parse_enroll_request,
)
from demotrace.collector.people import PeopleService
from demotrace.collector.retention import DEFAULT_SWEEP_INTERVAL_S, RetentionSchedule, RetentionService
from demotrace.collector.store import (
    BlobStore,
    KeyRing,
    MasterKey,
    MetadataStore,
    default_database_url,
    load_master_key,
    open_blob_store,
)
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.store.migrate import check_at_head
from demotrace.collector.upload_guard import UploadGuard
from demotrace.collector.uploads import (
    MAX_UPLOAD_CHUNK_BYTES,
    MAX_UPLOAD_REQUEST_BYTES,
    UPLOADS_FOLDER,
    ResumableUploads,
    UploadStatus,
    parse_content_range,
    parse_upload_request,
)
from demotrace.protocol import (
    ADMIN_AUDIT_PATH,
    ADMIN_EXEMPTION_DECISION_PATH,
    ADMIN_EXEMPTIONS_PATH,
    ADMIN_NAME_HEADER,
    ADMIN_PEOPLE_PATH,
    ADMIN_PERSON_DELETE_PATH,
    ADMIN_POLICY_PATH,
    ADMIN_RETENTION_RUN_PATH,
    DEVICE_EXEMPTION_APPLIED_PATH,
    DEVICE_POLICY_PATH,
    ENROLL_PATH,
    ENROLLMENT_SECRET_HEADER,
    EXEMPTIONS_PATH,
    HEALTH_PATH,
    RECORD_MEDIA_TYPE,
    RECORD_PATH,
    UPLOAD_PATH,
    UPLOADS_PATH,
    error_body,
)

# An oversized body that is at most this much larger than the limit is read and dropped before the 413,
# so the client gets the answer instead of a reset connection (and does not retry a hopeless upload).
_DRAIN_ALLOWANCE_FACTOR = 4

# The {decision} of ADMIN_EXEMPTION_DECISION_PATH, and whether it approves.
_APPROVES = {"approve": True, "deny": False}

log = logging.getLogger(__name__)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or PayloadTooLarge as soon as it is known to pass ``limit`` bytes."""
    declared_header = request.headers.get("content-length")
    declared: int | None = None
    if declared_header is not None:
        try:
            declared = int(declared_header)
        except ValueError as error:
            raise BadRequest("Content-Length is not a number") from error
    if declared is not None and declared > limit:
        if declared <= limit * _DRAIN_ALLOWANCE_FACTOR:
            await _drain(request)
        raise PayloadTooLarge(f"body is {declared} bytes, more than the {limit} allowed")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"body is more than the {limit} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request) -> None:
    async for _chunk in request.stream():
        pass


async def _discard_body(request: Request, limit: int) -> None:
    """Read and drop a refused request's body, up to ``limit`` bytes. A server that closes with unread
    data in flight may reset the connection before the client reads the answer (the lingering-close
    problem); worth avoiding for answers the client must act on, like ``exempt``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            return


def _error_response(error: CollectorError) -> JSONResponse:
    headers: dict[str, str] | None = None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(error, Busy):
        headers = {"Retry-After": str(error.retry_after)}
    return JSONResponse(error_body(error.code, error.message), status_code=error.status, headers=headers)


def create_app(
    data_dir: Path,
    database_url: str | None = None,
    enrollment_secret: str | None = None,
    *,
    blob_store: BlobStore | None = None,
    blobs_url: str | None = None,
    master_key: MasterKey | None = None,
    migrate: bool = True,
    retention_interval_s: float | None = DEFAULT_SWEEP_INTERVAL_S,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    admin_token: str | None = None,
    max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS,
) -> FastAPI:
    """A collector storing into ``data_dir``: SQLite ``collector.db``, ``blobs/`` and ``master.key`` unless
    told otherwise (``database_url``; ``blob_store`` or ``blobs_url``, such as ``s3://bucket/prefix``;
    ``master_key``, else ``$DEMOTRACE_MASTER_KEY``). The database is migrated to this code's schema first
    unless ``migrate`` is off (a worker whose starter migrated it). Retention sweeps every
    ``retention_interval_s`` (None: only when an admin asks).

    At most ``max_concurrent_ingests`` upload bodies (records and chunks) are read and stored at once;
    more answer 503 ``busy`` with ``Retry-After``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataStore.from_url(database_url or default_database_url(data_dir), migrate=migrate)
    if not migrate:
        check_at_head(metadata.engine)
    blobs = blob_store if blob_store is not None else open_blob_store(blobs_url, data_dir)
    keyring = KeyRing(metadata.engine, master_key or load_master_key(None, data_dir))
    exemption_store = ExemptionStore(metadata.engine)
    guard = UploadGuard(exemption_store, blobs)
    ingest = IngestService(
        metadata,
        blobs,
        upload_guard=guard,
        keyring=keyring,
        enrollment_secret=enrollment_secret,
        max_body_bytes=max_body_bytes,
        max_record_bytes=max_record_bytes,
    )
    uploads = ResumableUploads(ingest, data_dir / UPLOADS_FOLDER)
    exemptions = ExemptionService(exemption_store, blobs, partial_uploads=uploads, admin_token=admin_token)
    people = PeopleService(metadata, exemption_store, blobs, partial_uploads=uploads)
    retention = RetentionService(metadata, exemption_store, blobs)
    ingest_slots = IngestSlots(max_concurrent_ingests)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        schedule = None
        if retention_interval_s is not None:
            schedule = RetentionSchedule(retention, retention_interval_s).start()
        yield
        if schedule is not None:
            schedule.stop()
        metadata.close()

    app = FastAPI(title="demotrace collector", version=__version__, lifespan=lifespan)
    app.state.ingest = ingest
    app.state.ingest_slots = ingest_slots

    async def collector_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, CollectorError)
        if isinstance(error, Busy):
            log.info("upload refused: %s", error.message)  # load shedding at work, not a fault
        elif error.status >= 500:
            log.error("collector error: %s", error.message)
        return _error_response(error)

    app.add_exception_handler(CollectorError, collector_error)

    @app.get(HEALTH_PATH)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(ENROLL_PATH, status_code=201)
    async def enroll(request: Request) -> dict[str, str]:
        body = await _read_body(request, MAX_ENROLL_BODY_BYTES)
        asked = parse_enroll_request(body)
        enrollment = await run_in_threadpool(
            ingest.enroll, asked.device_name, request.headers.get(ENROLLMENT_SECRET_HEADER), asked.person_id
        )
        log.info("enrolled device %s (%s)", enrollment.device_id, asked.device_name)
        return {
            "device_id": enrollment.device_id,
            "token": enrollment.token,
            "person_id": enrollment.person_id,
        }

    @app.put(RECORD_PATH)
    async def put_record(record_id: str, request: Request) -> Response:
        # Authenticate before reading a byte of the body: strangers cost us nothing.
        device_id = await run_in_threadpool(ingest.authenticate, request.headers.get("authorization"))
        await _refuse_unread(request, ingest.max_body_bytes, guard.check_upload_allowed, device_id)
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != RECORD_MEDIA_TYPE:
            raise UnsupportedMediaType(f"Content-Type must be {RECORD_MEDIA_TYPE}")
        # Refused before a byte of the body is read: shedding load must not cost reading it.
        ingest_slots.acquire()
        try:
            body = await _read_body(request, ingest.max_body_bytes)
            outcome = await run_in_threadpool(ingest.store_record, device_id, record_id, body)
        finally:
            ingest_slots.release()
        return _store_outcome_response(outcome)

    _add_upload_routes(app, ingest, uploads, ingest_slots)
    _add_exemption_routes(app, ingest, exemptions)
    _add_people_routes(app, exemptions, people, retention)
    return app


async def _refuse_unread(request: Request, limit: int, check: Callable[[str], None], device_id: str) -> None:
    """Run ``check`` (which raises Exempt for an exempt device) before the body is read; on refusal,
    drop the body first so the device reads its 403 and stops, rather than retrying a reset link."""
    try:
        await run_in_threadpool(check, device_id)
    except Exempt:
        await _discard_body(request, limit)
        raise


def _store_outcome_response(outcome: StoreOutcome) -> JSONResponse:
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


def _add_upload_routes(
    app: FastAPI, ingest: IngestService, uploads: ResumableUploads, ingest_slots: IngestSlots
) -> None:
    """Resumable uploads: large records arrive in chunks and survive broken links and restarts."""
    app.state.uploads = uploads

    @app.post(UPLOADS_PATH)
    async def begin_upload(request: Request) -> Response:
        device_id = await run_in_threadpool(ingest.authenticate, request.headers.get("authorization"))
        upload_request = parse_upload_request(await _read_body(request, MAX_UPLOAD_REQUEST_BYTES))
        status = await run_in_threadpool(uploads.begin, device_id, upload_request)
        return _upload_status_response(status, 201 if status.created else 200)

    @app.get(UPLOAD_PATH)
    async def upload_status(upload_id: str, request: Request) -> Response:
        device_id = await run_in_threadpool(ingest.authenticate, request.headers.get("authorization"))
        return _upload_status_response(await run_in_threadpool(uploads.status, device_id, upload_id))

    @app.put(UPLOAD_PATH)
    async def put_upload_chunk(upload_id: str, request: Request) -> Response:
        device_id = await run_in_threadpool(ingest.authenticate, request.headers.get("authorization"))
        content_range = parse_content_range(request.headers.get("content-range"))
        if content_range.length > MAX_UPLOAD_CHUNK_BYTES:
            raise PayloadTooLarge(f"chunks may be at most {MAX_UPLOAD_CHUNK_BYTES} bytes")
        await _refuse_unread(request, content_range.length, uploads.refuse_if_exempt, device_id)
        ingest_slots.acquire()
        try:
            chunk = await _read_body(request, content_range.length)
            answer = await run_in_threadpool(uploads.append, device_id, upload_id, content_range, chunk)
        finally:
            ingest_slots.release()
        if isinstance(answer, StoreOutcome):
            return _store_outcome_response(answer)
        return _upload_status_response(answer, 202)


def _add_exemption_routes(app: FastAPI, ingest: IngestService, exemptions: ExemptionService) -> None:
    """Exemption requests (devices), their decisions, the fleet policy and the audit log (admins)."""
    app.state.exemptions = exemptions

    async def device_of(request: Request) -> str:
        device_id: str = await run_in_threadpool(ingest.authenticate, request.headers.get("authorization"))
        return device_id

    async def admin_of(request: Request) -> str:
        await run_in_threadpool(exemptions.authenticate_admin, request.headers.get("authorization"))
        return admin_name(request.headers.get(ADMIN_NAME_HEADER))

    @app.post(EXEMPTIONS_PATH, status_code=201)
    async def request_exemption(request: Request) -> dict[str, object]:
        device_id = await device_of(request)
        body = parse_exemption_request(await _read_body(request, MAX_EXEMPTION_BODY_BYTES))
        return await run_in_threadpool(exemptions.request_exemption, device_id, body)

    @app.get(DEVICE_POLICY_PATH)
    async def device_policy(request: Request) -> dict[str, object]:
        device_id = await device_of(request)
        return await run_in_threadpool(exemptions.device_policy, device_id)

    @app.post(DEVICE_EXEMPTION_APPLIED_PATH)
    async def exemption_applied(request: Request) -> dict[str, object]:
        device_id = await device_of(request)
        report = parse_exemption_applied(await _read_body(request, MAX_EXEMPTION_BODY_BYTES))
        return await run_in_threadpool(exemptions.report_applied, device_id, report)

    @app.get(ADMIN_EXEMPTIONS_PATH)
    async def list_exemptions(request: Request, status: str | None = None) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(exemptions.list_requests, status)

    @app.post(ADMIN_EXEMPTION_DECISION_PATH)
    async def decide_exemption(request_id: int, decision: str, request: Request) -> dict[str, object]:
        if decision not in _APPROVES:  # answered like any unknown path: before the admin check
            raise NotFound(f"no decision {decision!r}: approve or deny")
        admin = await admin_of(request)
        return await run_in_threadpool(exemptions.decide, request_id, _APPROVES[decision], admin)

    @app.put(ADMIN_POLICY_PATH)
    async def set_policy(request: Request) -> dict[str, object]:
        admin = await admin_of(request)
        body = await _read_body(request, MAX_POLICY_BYTES)
        return await run_in_threadpool(exemptions.set_fleet_policy, body, admin)

    @app.get(ADMIN_POLICY_PATH)
    async def get_policy(request: Request) -> dict[str, object]:
        await admin_of(request)
        text, source, updated_at = await run_in_threadpool(exemptions.fleet_policy_text)
        return {"policy": text, "policy_source": source, "policy_updated_at": updated_at}

    @app.get(ADMIN_AUDIT_PATH)
    async def audit_log(
        request: Request, limit: int = 1000, device_id: str | None = None
    ) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(exemptions.audit, limit, device_id)


def _add_people_routes(
    app: FastAPI, exemptions: ExemptionService, people: PeopleService, retention: RetentionService
) -> None:
    """People and the deletion of their data; retention on demand (admins)."""
    app.state.people = people
    app.state.retention = retention

    async def admin_of(request: Request) -> str:
        await run_in_threadpool(exemptions.authenticate_admin, request.headers.get("authorization"))
        return admin_name(request.headers.get(ADMIN_NAME_HEADER))

    @app.get(ADMIN_PEOPLE_PATH)
    async def list_people(request: Request) -> list[dict[str, object]]:
        await admin_of(request)
        return await run_in_threadpool(people.list_people)

    @app.post(ADMIN_PERSON_DELETE_PATH)
    async def delete_person(person_id: str, request: Request) -> dict[str, object]:
        admin = await admin_of(request)
        return await run_in_threadpool(people.delete_person_data, person_id, admin)

    @app.post(ADMIN_RETENTION_RUN_PATH)
    async def run_retention(request: Request) -> dict[str, object]:
        admin = await admin_of(request)
        result = await run_in_threadpool(retention.sweep, f"admin:{admin}")
        return {
            "retention_days": result.retention_days,
            "cutoff": result.cutoff,
            "deleted_records": result.records,
            "deleted_sessions": result.sessions,
            "deleted_blobs": result.blobs,
        }
