"""Exemptions, the fleet policy and the audit log: device requests, admin decisions, and the record of
all of it. Also the fleet policy's parsing and rendering.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

import msgspec

from demotrace.collector.admin_auth import AdminCredentials
from demotrace.collector.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    WideningNotConfirmed,
)
from demotrace.collector.policy_review import missing_keys, policy_diff
from demotrace.collector.store import BlobStore
from demotrace.collector.store.exemption_store import (
    EXEMPTION_APPROVED,
    EXEMPTION_DENIED,
    EXEMPTION_REQUESTED,
    AuditRecord,
    ExemptionRequest,
    ExemptionStore,
)
from demotrace.collector.upload_guard import audit_record
from demotrace.collector.uploads import ResumableUploads
from demotrace.policy import DEFAULT_FLEET_POLICY, CapturePolicy, PolicyError, parse_policy
from demotrace.policy_change import widenings

MAX_EXEMPTION_BODY_BYTES = 16 * 1024
MAX_REASON_CHARS = 2000
MAX_POLICY_BYTES = 256 * 1024


class ExemptionRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    delete_collected: bool = False


class ExemptionAppliedBody(msgspec.Struct, forbid_unknown_fields=True):
    deleted_unsent: int = 0


def parse_exemption_request(body: bytes) -> ExemptionRequestBody:
    """A device's exemption request; the reason is required, printable and bounded."""
    try:
        request = msgspec.json.decode(body, type=ExemptionRequestBody)
    except msgspec.DecodeError as error:
        raise BadRequest(f'expected JSON {{"reason": "...", "delete_collected": false}}: {error}') from error
    reason = request.reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS or "\0" in reason:
        raise BadRequest(f"reason must have 1 to {MAX_REASON_CHARS} characters")
    return ExemptionRequestBody(reason=reason, delete_collected=request.delete_collected)


def parse_exemption_applied(body: bytes) -> ExemptionAppliedBody:
    try:
        report = msgspec.json.decode(body or b"{}", type=ExemptionAppliedBody)
    except msgspec.DecodeError as error:
        raise BadRequest(f'expected JSON {{"deleted_unsent": N}}: {error}') from error
    if report.deleted_unsent < 0:
        raise BadRequest("deleted_unsent must not be negative")
    return report


def parse_fleet_policy(body: bytes) -> tuple[str, CapturePolicy]:
    """The policy text an admin sends, validated; BadRequest carries parse_policy's message."""
    try:
        text = body.decode()
    except UnicodeDecodeError as error:
        raise BadRequest("the policy must be UTF-8 TOML text") from error
    try:
        policy = parse_policy(text, source="policy")
    except PolicyError as error:
        raise BadRequest(str(error)) from error
    missing = missing_keys(text)
    if missing:
        raise BadRequest("a fleet policy must state what the fleet relies on; missing: " + "; ".join(missing))
    return text, policy


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string without ASCII escaping is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def render_policy_toml(policy: CapturePolicy) -> str:
    """A policy as the TOML that parse_policy reads back to the same policy."""
    fields = msgspec.to_builtins(policy)
    return "".join(f"{name} = {_toml_value(value)}\n" for name, value in fields.items())


def _request_json(request: ExemptionRequest) -> dict[str, object]:
    return {
        "id": request.id,
        "device_id": request.device_id,
        "person_id": request.person_id,
        "reason": request.reason,
        "delete_collected": request.delete_collected,
        "status": request.status,
        "requested_at": request.requested_at,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at,
    }


def delete_blobs(blobs: BlobStore, blob_keys: list[str]) -> int:
    """Delete these blobs; returns how many were there."""
    deleted = 0
    for key in blob_keys:
        if blobs.exists(key):
            blobs.delete(key)
            deleted += 1
    return deleted


class ExemptionService:
    """Exemption requests and decisions, the fleet policy, and the audit trail of all of it.

    An approval also discards the device's unfinished resumable uploads (``partial_uploads``, when
    given), and deletes its collected records' blobs from ``blobs`` when the request asked for that. The
    refusal of an exempt device's uploads is the UploadGuard's (see upload_guard.py).
    """

    def __init__(
        self,
        store: ExemptionStore,
        blobs: BlobStore,
        *,
        partial_uploads: ResumableUploads | None = None,
        admin: AdminCredentials | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.partial_uploads = partial_uploads
        self.admin = admin or AdminCredentials()
        self.clock = clock

    def _audit(self, actor: str, action: str, device_id: str | None, **details: object) -> AuditRecord:
        return audit_record(self.clock(), actor, action, device_id, **details)

    # --- admins ---------------------------------------------------------------------------------------

    def authenticate_admin(self, authorization: str | None) -> str:
        return self.admin.check(authorization)

    def list_requests(self, status: str | None = None) -> list[dict[str, object]]:
        if status is not None and status not in (EXEMPTION_REQUESTED, EXEMPTION_APPROVED, EXEMPTION_DENIED):
            raise BadRequest("status must be requested, approved or denied")
        return [_request_json(request) for request in self.store.requests(status=status)]

    def decide(self, request_id: int, approve: bool, actor: str) -> dict[str, object]:
        """Approve or deny a pending request. An approval covers every device of the person who asked;
        with delete_collected it deletes every record the collector holds from any of them (their data
        key and rows in the decision's transaction, then the blobs)."""
        existing = self.store.get_request(request_id)
        if existing is None:
            raise NotFound(f"no exemption request {request_id}")
        if existing.status != EXEMPTION_REQUESTED:
            raise Conflict(f"exemption request {request_id} was already {existing.status}")
        action = "exemption_approved" if approve else "exemption_denied"
        decided = self.store.decide(
            request_id,
            approve,
            actor,
            self.clock(),
            self._audit(actor, action, existing.device_id),
        )
        if decided is None:
            raise Conflict(f"exemption request {request_id} was decided by someone else just now")
        request, blob_keys = decided
        answer = _request_json(request)
        devices = self.store.devices_of(request.person_id)
        answer["devices"] = devices
        if approve and self.partial_uploads is not None:
            # Half-uploaded records are the person's data too: nothing of an exempt person stays.
            discarded = sum(self.partial_uploads.discard_device(device) for device in devices)
            answer["discarded_uploads"] = discarded
            if discarded:
                self.store.append_audit(
                    self._audit(
                        actor,
                        "partial_uploads_discarded",
                        request.device_id,
                        request_id=request_id,
                        uploads=discarded,
                    )
                )
        if approve and request.delete_collected:
            answer["deleted_records"] = len(blob_keys)
            answer["deleted_blobs"] = self._delete_blobs(blob_keys)
            self.store.append_audit(
                self._audit(
                    actor,
                    "collected_data_deleted",
                    request.device_id,
                    request_id=request_id,
                    records=len(blob_keys),
                    blobs=answer["deleted_blobs"],
                )
            )
        return answer

    def _delete_blobs(self, blob_keys: list[str]) -> int:
        return delete_blobs(self.blobs, blob_keys)

    def set_fleet_policy(self, body: bytes, actor: str, confirm_widening: bool = False) -> dict[str, object]:
        """Store a new fleet policy. It must be complete (BadRequest names what is missing); one that
        widens capture needs ``confirm_widening`` (else WideningNotConfirmed lists how it widens). The
        audit entry carries the diff against the policy it replaces."""
        if len(body) > MAX_POLICY_BYTES:
            raise PayloadTooLarge(f"policy larger than {MAX_POLICY_BYTES} bytes")
        text, policy = parse_fleet_policy(body)
        current_text, _source, _at = self.fleet_policy_text()
        current = parse_policy(current_text, source="stored fleet policy")
        widened = widenings(current, policy)
        if widened and not confirm_widening:
            raise WideningNotConfirmed(
                "this policy widens capture (" + "; ".join(widened) + "): send it again with "
                "confirm_widening=true (`demotrace admin policy set --confirm-widening`) if that is meant"
            )
        self.store.set_fleet_policy(
            text,
            actor,
            self.clock(),
            self._audit(
                actor,
                "policy_set",
                None,
                sha256=hashlib.sha256(body).hexdigest(),
                mode=policy.mode,
                diff=policy_diff(current, policy),
                widens=widened,
            ),
        )
        return {"status": "stored", "mode": policy.mode, "widens": widened}

    def fleet_policy_text(self) -> tuple[str, str, float | None]:
        """The policy devices get: (TOML text, "fleet" or "default", when it was set)."""
        stored = self.store.fleet_policy()
        if stored is None:
            return render_policy_toml(DEFAULT_FLEET_POLICY), "default", None
        return stored.text, "fleet", stored.updated_at

    def fleet_policy(self) -> CapturePolicy:
        """The policy in force, parsed (stored policies were checked when an admin set them)."""
        return parse_policy(self.fleet_policy_text()[0], source="fleet policy")

    def audit(
        self,
        limit: int = 1000,
        device_id: str | None = None,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, object]]:
        """The audit log, newest ``limit`` entries matching the filters (see ExemptionStore.audit)."""
        if not 1 <= limit <= 100_000:
            raise BadRequest("limit must be between 1 and 100000")
        if (actor is not None and len(actor) > 256) or (action is not None and len(action) > 64):
            raise BadRequest("actor has at most 256 characters, action at most 64")
        return [
            {
                "id": entry.id,
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action,
                "device_id": entry.device_id,
                "details": json.loads(entry.details or "{}"),
            }
            for entry in self.store.audit(
                limit, device_id, actor=actor, action=action, since=since, until=until
            )
        ]

    # --- devices --------------------------------------------------------------------------------------

    def request_exemption(self, device_id: str, body: ExemptionRequestBody) -> dict[str, object]:
        history = self.store.requests(device_id=device_id)
        if any(request.status == EXEMPTION_APPROVED for request in history):
            raise Conflict("this device's person is already exempt")
        pending = [request for request in history if request.status == EXEMPTION_REQUESTED]
        if pending:
            raise Conflict(f"exemption request {pending[-1].id} is already waiting for a decision")
        request = self.store.add_request(
            device_id,
            body.reason,
            body.delete_collected,
            self.clock(),
            self._audit(
                f"device:{device_id}",
                "exemption_requested",
                device_id,
                delete_collected=body.delete_collected,
            ),
        )
        return _request_json(request)

    def device_policy(self, device_id: str) -> dict[str, object]:
        text, source, updated_at = self.fleet_policy_text()
        history = self.store.requests(device_id=device_id)
        exempt = any(request.status == EXEMPTION_APPROVED for request in history)
        latest = history[-1] if history else None
        return {
            "policy": text,
            "policy_source": source,
            "policy_updated_at": updated_at,
            "exempt": exempt,
            "exemption_status": EXEMPTION_APPROVED if exempt else (latest.status if latest else "none"),
            "exemption_request_id": latest.id if latest else None,
        }

    def report_applied(self, device_id: str, report: ExemptionAppliedBody) -> dict[str, object]:
        """The device says it applied its exemption: stopped recording, deleted its unsent spool."""
        if not self.store.is_exempt(device_id):
            raise Conflict("this device is not exempt")
        self.store.append_audit(
            self._audit(
                f"device:{device_id}",
                "exemption_applied_on_device",
                device_id,
                deleted_unsent=report.deleted_unsent,
            )
        )
        return {"status": "recorded"}
