"""The wire contract between a device and the collector, imported by both sides.

One place for what both must agree on: media types, headers, request paths, the shape of an error
body, and how a record is named on the wire. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from demotrace.model import Batch, Record

RECORD_MEDIA_TYPE = "application/x-demotrace-record"
"""A record upload's body: one MessagePack record, zstd-compressed."""
DELTA_MEDIA_TYPE = "application/x-demotrace-delta"
"""A frame's image that holds only the tiles that changed since an earlier frame."""

ENROLLMENT_SECRET_HEADER = "X-Enrollment-Secret"

REDACTED_MARKER_KIND = "redacted"
"""A marker's kind where the device removed a sensitive span (its text is the placeholder's kind)."""
NOT_CAPTURED_MARKER_KIND = "not_captured"
"""A marker's kind for a span in which nothing was captured (text: the reason; duration: its length)."""
INPUT_ONLY_MARKER_KIND = "input_only"
"""A marker's kind where input goes on being captured but frames stop (text: the reason)."""
STOP_MARKER_KIND = "stop"
"""The marker that ends a recording session."""

API_PREFIX = "/v1"
HEALTH_PATH = f"{API_PREFIX}/health"
ENROLL_PATH = f"{API_PREFIX}/enroll"
RECORD_PATH = f"{API_PREFIX}/records/{{record_id}}"
UPLOADS_PATH = f"{API_PREFIX}/uploads"
UPLOAD_PATH = f"{API_PREFIX}/uploads/{{upload_id}}"
EXEMPTIONS_PATH = f"{API_PREFIX}/exemptions"
DEVICE_POLICY_PATH = f"{API_PREFIX}/device/policy"
DEVICE_EXEMPTION_APPLIED_PATH = f"{API_PREFIX}/device/exemption-applied"
DEVICE_REPORT_PATH = f"{API_PREFIX}/device/report"
DEVICE_PAUSES_PATH = f"{API_PREFIX}/device/pauses"
DEVICE_NOTICE_ACK_PATH = f"{API_PREFIX}/device/notice-ack"
ADMIN_EXEMPTIONS_PATH = f"{API_PREFIX}/admin/exemptions"
ADMIN_EXEMPTION_DECISION_PATH = f"{API_PREFIX}/admin/exemptions/{{request_id}}/{{decision}}"
ADMIN_POLICY_PATH = f"{API_PREFIX}/admin/policy"
ADMIN_AUDIT_PATH = f"{API_PREFIX}/admin/audit"
ADMIN_NOTICE_ACKS_PATH = f"{API_PREFIX}/admin/notice-acks"
ADMIN_DEVICES_PATH = f"{API_PREFIX}/admin/devices"
ADMIN_DEVICE_REVOKE_PATH = f"{API_PREFIX}/admin/devices/{{device_id}}/revoke"
ADMIN_PEOPLE_PATH = f"{API_PREFIX}/admin/people"
ADMIN_PERSON_DELETE_PATH = f"{API_PREFIX}/admin/people/{{person_id}}/delete"
ADMIN_RETENTION_RUN_PATH = f"{API_PREFIX}/admin/retention/run"


def path_for(template: str, **ids: str) -> str:
    """A request path with its ``{name}`` parts filled, each id quoted as one path segment."""
    return template.format(**{name: quote(value, safe="") for name, value in ids.items()})


def record_id_of(record: Record) -> str:
    """The id a record is uploaded and stored under (idempotency key on the collector)."""
    return record.batch_id if isinstance(record, Batch) else record.frame_id


class ErrorBody(msgspec.Struct):
    """What the collector answers with any refusal: a stable short ``error`` code and a sentence."""

    error: str
    detail: str


def error_body(code: str, detail: str) -> dict[str, Any]:
    """The JSON body of a refusal, as the collector sends it."""
    return {"error": code, "detail": detail}


def parse_error_body(content: bytes) -> ErrorBody | None:
    """The collector's error body, or None when ``content`` is not one (a proxy's page, an empty body)."""
    try:
        decoded = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    code, detail = decoded.get("error"), decoded.get("detail")
    if not isinstance(code, str) and not isinstance(detail, str):
        return None
    return ErrorBody(error=str(code or ""), detail=str(detail or ""))


def error_summary(content: bytes, limit: int = 200) -> str:
    """A refusal in one line: the collector's ``detail`` (else its code), else the body's start."""
    body = parse_error_body(content)
    if body is not None and (body.detail or body.error):
        return body.detail or body.error
    return content[:limit].decode("utf-8", "replace")
