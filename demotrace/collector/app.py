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
  with ``Retry-After`` (seconds), before its body is read; also 503 when the ingest memory budget is
  spent. A device past its own request rate or upload concurrency → 429 ``rate_limited`` with
  ``Retry-After``; a body slower than the minimum rate → 408 ``body_too_slow`` (connection closed).
- ``POST /v1/device/pauses`` JSON ``{"events": [{"kind": "paused"|"resumed"|"expired", "at",
  "paused_until", "request_id"}]}``: the device's pauses (times only); ``GET /v1/device/policy`` also
  answers ``pause_request`` (``{"id", "action": "pause"|"resume", "seconds_left"}`` or null): a pause
  asked for on the portal that this device has not reported applying yet.
- ``POST /v1/device/report`` JSON ``{"frames_dropped_quota", "frames_dropped_disk_full", "disk_full"}``:
  what the device had to drop, written to the audit log.
- Admin (``Authorization: Bearer <admin token>``; audited as ``admin:token:<8 hex of its SHA-256>``):
  ``GET /v1/admin/exemptions``, ``POST /v1/admin/exemptions/{id}/approve|deny``,
  ``PUT|GET /v1/admin/policy`` (TOML; a complete policy, and ``?confirm_widening=true`` when it
  widens capture: else 400/409), ``GET /v1/admin/audit``, ``GET /v1/admin/devices``,
  ``POST /v1/admin/devices/{device_id}/revoke``, ``GET /v1/admin/people``,
  ``POST /v1/admin/people/{person_id}/delete`` (everything of that person's devices, key first),
  ``POST /v1/admin/retention/run`` (a retention sweep now; it also runs on a schedule). Failed admin
  logins are throttled per address (429).
- Enrolment may name the person the device is for: ``{"device_name", "person_id"}`` (a pseudonym);
  without one the device gets a person of its own. Exemptions and deletions cover a person's devices.
- The portal (pages, not in the OpenAPI schema): ``/login``, ``/logout``, ``/`` and the pages of each
  role (see portal/); signed-in accounts, audited as ``account:<name>``.
- A method a path does not take (OPTIONS included) → 405 ``method_not_allowed`` with every method the
  path takes in ``Allow``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from demotrace import __version__
from demotrace.collector.accounts import LocalAccounts
from demotrace.collector.admin_auth import AdminCredentials
from demotrace.collector.bodies import read_body
from demotrace.collector.devices import DeviceAdmin
from demotrace.collector.errors import (
    BodyTooSlow,
    Busy,
    ClientGone,
    CollectorError,
    PayloadTooLarge,
    RetryableError,
    TooManyRequests,
)
from demotrace.collector.exemptions import ExemptionService
from demotrace.collector.guards import RequestGuards, Services
from demotrace.collector.ingest import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENT_INGESTS,
    DEFAULT_MAX_RECORD_BYTES,
    MAX_ENROLL_BODY_BYTES,
    EnrollRequest,
    IngestService,
    IngestSlots,
    parse_enroll_request,
)
from demotrace.collector.limits import CollectorLimits, MemoryBudget
from demotrace.collector.methods import add_method_not_allowed_handler
from demotrace.collector.my_data import MyData
from demotrace.collector.openapi import json_body, refusals
from demotrace.collector.pauses import PauseService
from demotrace.collector.people import PeopleService
from demotrace.collector.portal.auth import Portal
from demotrace.collector.portal.pages_admin import add_admin_pages
from demotrace.collector.portal.pages_docs import add_docs_page
from demotrace.collector.portal.pages_employee import add_employee_pages
from demotrace.collector.portal.pages_fleet import add_fleet_pages
from demotrace.collector.portal.pages_login import add_portal_shell
from demotrace.collector.retention import DEFAULT_SWEEP_INTERVAL_S, RetentionSchedule, RetentionService
from demotrace.collector.routes_admin import add_admin_routes, add_device_routes, add_people_routes
from demotrace.collector.routes_uploads import add_upload_routes
from demotrace.collector.store import (
    BlobStore,
    KeyRing,
    MasterKey,
    MetadataStore,
    default_database_url,
    load_master_key,
    open_blob_store,
)
from demotrace.collector.store.account_store import AccountStore
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.store.migrate import check_at_head
from demotrace.collector.store.pause_store import PauseStore
from demotrace.collector.upload_guard import UploadGuard
from demotrace.collector.uploads import UPLOADS_FOLDER, ResumableUploads
from demotrace.collector.web_sessions import LoginThrottle, WebSessions
from demotrace.protocol import ENROLL_PATH, ENROLLMENT_SECRET_HEADER, HEALTH_PATH, error_body

log = logging.getLogger(__name__)


def _error_response(error: CollectorError) -> JSONResponse:
    headers: dict[str, str] = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RetryableError):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, BodyTooSlow | PayloadTooLarge | ClientGone):
        # Part of the body may still be on its way: this connection cannot carry another request.
        headers["Connection"] = "close"
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
    admin_token_file: Path | None = None,
    max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS,
    limits: CollectorLimits | None = None,
) -> FastAPI:
    """A collector storing into ``data_dir``: SQLite ``collector.db``, ``blobs/`` and ``master.key`` unless
    told otherwise (``database_url``; ``blob_store`` or ``blobs_url``, such as ``s3://bucket/prefix``;
    ``master_key``, else ``$DEMOTRACE_MASTER_KEY``). The database is migrated to this code's schema first
    unless ``migrate`` is off (a worker whose starter migrated it). Retention sweeps every
    ``retention_interval_s`` (None: only when an admin asks).

    At most ``max_concurrent_ingests`` upload bodies (records and chunks) are stored at once, and the
    bodies and records being stored hold at most ``limits.max_ingest_memory_bytes``; more answer 503
    ``busy`` with ``Retry-After``. ``limits`` bounds what any one client may cost (see limits.py).
    """
    limits = limits or CollectorLimits()
    data_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataStore.from_url(database_url or default_database_url(data_dir), migrate=migrate)
    if not migrate:
        check_at_head(metadata.engine)
    blobs = blob_store if blob_store is not None else open_blob_store(blobs_url, data_dir)
    keyring = KeyRing(metadata.engine, master_key or load_master_key(None, data_dir))
    exemption_store = ExemptionStore(metadata.engine)
    upload_guard = UploadGuard(exemption_store, blobs)
    memory = MemoryBudget(limits.max_ingest_memory_bytes)
    ingest = IngestService(
        metadata,
        blobs,
        upload_guard=upload_guard,
        keyring=keyring,
        enrollment_secret=enrollment_secret,
        max_body_bytes=max_body_bytes,
        max_record_bytes=max_record_bytes,
        memory=memory,
    )
    uploads = ResumableUploads(ingest, data_dir / UPLOADS_FOLDER)
    exemptions = ExemptionService(
        exemption_store,
        blobs,
        partial_uploads=uploads,
        admin=AdminCredentials(admin_token, admin_token_file),
    )
    people = PeopleService(metadata, exemption_store, blobs, partial_uploads=uploads)
    retention = RetentionService(metadata, exemption_store, blobs)
    guards = RequestGuards(limits, IngestSlots(max_concurrent_ingests), memory)
    services = Services(ingest, uploads, exemptions, upload_guard, guards)
    devices = DeviceAdmin(metadata, exemption_store)
    pauses = PauseService(PauseStore(metadata.engine), metadata.person_of, exemptions.fleet_policy)
    my_data = MyData(metadata, blobs, keyring, exemption_store, pauses, partial_uploads=uploads)
    account_store = AccountStore(metadata.engine)
    accounts = LocalAccounts(account_store)
    portal = Portal(
        accounts=accounts,
        sessions=WebSessions(account_store, accounts),
        throttle=LoginThrottle(
            limits.login_failures_per_account,
            limits.login_failures_per_address,
            limits.login_failure_window_s,
        ),
        pace=guards.pace,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        schedule = None
        if retention_interval_s is not None:
            schedule = RetentionSchedule(retention, retention_interval_s).start()
        yield
        if schedule is not None:
            schedule.stop()
        metadata.close()

    app = FastAPI(
        title="demotrace collector",
        version=__version__,
        lifespan=lifespan,
        # The interactive docs are the portal's (admins only, assets served from here): see portal/.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ingest = ingest
    app.state.ingest_slots = guards.ingest_slots
    app.state.uploads = uploads
    app.state.exemptions = exemptions
    app.state.guards = guards
    app.state.my_data = my_data

    async def collector_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, CollectorError)
        if isinstance(error, Busy | TooManyRequests | BodyTooSlow | ClientGone):
            log.info("request refused: %s", error.message)  # load shedding at work, not a fault
        elif error.status >= 500:
            log.error("collector error: %s", error.message)
        return _error_response(error)

    app.add_exception_handler(CollectorError, collector_error)
    add_method_not_allowed_handler(app)

    @app.get(HEALTH_PATH)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        ENROLL_PATH,
        status_code=201,
        openapi_extra=json_body(EnrollRequest),
        responses=refusals(400, 401, 408, 413, 429),
    )
    async def enroll(request: Request) -> dict[str, str]:
        guards.enrolment(request)
        body = await read_body(request, MAX_ENROLL_BODY_BYTES, guards.pace)
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

    add_upload_routes(app, services)
    add_device_routes(app, services, devices, pauses)
    add_admin_routes(app, services, devices)
    add_people_routes(app, services, people, retention)
    add_portal_shell(app, portal)
    add_admin_pages(app, exemptions)
    add_employee_pages(app, my_data, exemptions)
    add_fleet_pages(app, devices, exemptions)
    add_docs_page(app)
    return app
