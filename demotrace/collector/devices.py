"""Device administration: list enrolled devices, revoke one (its token refused at once), and the health
reports devices send about what they had to drop (a full disk, the spool quota). All of it audited."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import msgspec

from demotrace.collector.errors import BadRequest, NotFound
from demotrace.collector.fleet import FleetService
from demotrace.collector.ingest import token_digest
from demotrace.collector.store import MetadataStore
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.store.fleet_store import FleetStore
from demotrace.collector.upload_guard import audit_record

MAX_REPORT_BODY_BYTES = 4 * 1024
MAX_REPORTED_COUNT = 2**53
MAX_VERSION_CHARS = 64
MAX_ERROR_CHARS = 500


class DeviceReportBody(msgspec.Struct, forbid_unknown_fields=True):
    """What a device dropped since its last report, whether its disk is full now, and its health for
    the fleet page (agent version, records waiting in its spool, its last upload error)."""

    frames_dropped_quota: int = 0
    frames_dropped_disk_full: int = 0
    disk_full: bool = False
    agent_version: str | None = None
    spool_backlog: int | None = None
    last_error: str | None = None


def parse_device_report(body: bytes) -> DeviceReportBody:
    try:
        report = msgspec.json.decode(body or b"{}", type=DeviceReportBody)
    except msgspec.DecodeError as error:
        raise BadRequest(
            f"expected JSON like {msgspec.json.encode(DeviceReportBody()).decode()}: {error}"
        ) from error
    for count in (report.frames_dropped_quota, report.frames_dropped_disk_full, report.spool_backlog or 0):
        if not 0 <= count <= MAX_REPORTED_COUNT:
            raise BadRequest(f"counts must be between 0 and {MAX_REPORTED_COUNT}")
    version = report.agent_version
    if version is not None and not (0 < len(version) <= MAX_VERSION_CHARS and version.isprintable()):
        raise BadRequest(f"agent_version must have 1 to {MAX_VERSION_CHARS} printable characters")
    if report.last_error is not None and len(report.last_error) > MAX_ERROR_CHARS:
        raise BadRequest(f"last_error must have at most {MAX_ERROR_CHARS} characters")
    return report


class DeviceAdmin:
    def __init__(
        self,
        metadata: MetadataStore,
        audit_store: ExemptionStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.audit_store = audit_store
        self.fleet_store = FleetStore(metadata.engine)
        self.clock = clock

    def fleet(self) -> FleetService:
        return FleetService(self.fleet_store, self.clock)

    def list_devices(self) -> list[dict[str, object]]:
        """Every enrolled device, oldest first, with its health (never its activity: see fleet.py)."""
        return [
            {
                "device_id": device.device_id,
                "name": device.name,
                "person_id": device.person_id,
                "enrolled_at": device.enrolled_at,
                "status": device.status,
                "agent_version": device.agent_version,
                "last_seen": device.last_seen,
                "spool_backlog": device.spool_backlog,
                "last_error": device.last_error,
            }
            for device in self.fleet().device_health()
        ]

    def revoke(self, device_id: str, actor: str) -> dict[str, object]:
        """Refuse the device's token from now on (it must enrol again to upload anything)."""
        # The digest of a token nobody was ever given: the old one matches nothing any more.
        unusable = token_digest("revoked:" + secrets.token_urlsafe(32))
        audit = audit_record(self.clock(), actor, "device_revoked", device_id)
        if not self.metadata.revoke_device(device_id, unusable, audit):
            raise NotFound(f"no device {device_id}")
        return {"device_id": device_id, "status": "revoked"}

    def report(self, device_id: str, report: DeviceReportBody) -> dict[str, object]:
        now = self.clock()
        last_error = "".join(c if c.isprintable() else " " for c in report.last_error or "") or None
        self.fleet_store.set_health(device_id, now, report.agent_version, report.spool_backlog, last_error)
        if not (report.frames_dropped_quota or report.frames_dropped_disk_full or report.disk_full):
            return {"status": "recorded"}  # health alone is kept on the device, not in the audit log
        drops = msgspec.structs.replace(report, agent_version=None, spool_backlog=None, last_error=None)
        self.audit_store.append_audit(
            audit_record(
                self.clock(),
                f"device:{device_id}",
                "device_report",
                device_id,
                **{k: v for k, v in msgspec.to_builtins(drops).items() if v is not None},
            )
        )
        return {"status": "recorded"}
