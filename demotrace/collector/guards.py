"""What every route checks before it does work: who is asking, and whether they may ask now.

One object built from CollectorLimits holds the limiters the routes share: device authentication with
a per-device request rate, per-device upload concurrency, the collector-wide ingest slots and memory
budget, enrolment throttled per client address, and failed admin logins throttled per address.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from demotrace.collector.admin_auth import AdminCredentials
from demotrace.collector.bodies import BodyPace
from demotrace.collector.errors import TooManyRequests, Unauthorized
from demotrace.collector.exemptions import ExemptionService
from demotrace.collector.ingest import IngestService, IngestSlots
from demotrace.collector.limits import CollectorLimits, KeyedSlots, MemoryBudget, RateLimiter
from demotrace.collector.upload_guard import UploadGuard
from demotrace.collector.uploads import ResumableUploads


def client_address(request: Request) -> str:
    """The peer address (a proxy in front must be trusted to be the one peer: see the threat model)."""
    return request.client.host if request.client is not None else "unknown"


class RequestGuards:
    def __init__(self, limits: CollectorLimits, ingest_slots: IngestSlots, memory: MemoryBudget) -> None:
        self.limits = limits
        self.pace = BodyPace(limits.min_body_bytes_per_second, limits.body_grace_seconds)
        self.ingest_slots = ingest_slots
        self.memory = memory
        self.device_rate = RateLimiter(limits.device_requests_per_second, limits.device_request_burst)
        self.device_uploads = KeyedSlots(limits.max_uploads_per_device)
        self.enrollments = RateLimiter(limits.enrollments_per_minute / 60, limits.enrollment_burst)
        self.admin_failures = RateLimiter(limits.admin_failures_per_minute / 60, limits.admin_failure_burst)

    async def device(self, request: Request, ingest: IngestService) -> str:
        """The authenticated device (401 otherwise), within its request rate (429 otherwise)."""
        device_id: str = await run_in_threadpool(ingest.authenticate, request.headers.get("authorization"))
        self.device_rate.take(device_id, "requests from this device")
        return device_id

    def enrolment(self, request: Request) -> None:
        """Count one enrolment attempt from this address (429 past the limit)."""
        self.enrollments.take(client_address(request), "enrolments from this address")

    async def admin(self, request: Request, credentials: AdminCredentials) -> str:
        """Authenticate an admin token (returns its audit actor, ``admin:token:<8 hex>``); an address with
        too many recent failures is refused before the check."""
        address = client_address(request)
        wait = self.admin_failures.wait_needed(address)
        if wait > 0:
            raise TooManyRequests(
                f"too many failed admin logins from this address: retry in {int(wait) + 1} s", int(wait) + 1
            )
        try:
            actor: str = await run_in_threadpool(credentials.check, request.headers.get("authorization"))
            return actor
        except Unauthorized:
            self.admin_failures.spend(address)
            raise


@dataclass(frozen=True)
class Services:
    """The services and guards the routes are built over (see app.create_app)."""

    ingest: IngestService
    uploads: ResumableUploads
    exemptions: ExemptionService
    upload_guard: UploadGuard
    guards: RequestGuards
