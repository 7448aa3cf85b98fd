"""Notice acknowledgements from devices: stored with an audit entry, listed for admins.

The collector keeps which notice (its digest, made from the policy on the device: see demotrace/notice.py)
a device's person accepted and when; it tells an admin whether that is the notice of today's fleet policy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import msgspec

from demotrace.collector.errors import BadRequest, NotFound
from demotrace.collector.store.consent_store import ConsentStore
from demotrace.collector.upload_guard import audit_record
from demotrace.notice import notice_digest
from demotrace.policy import CapturePolicy

MAX_NOTICE_ACK_BODY_BYTES = 1024
_DIGEST = re.compile(r"[0-9a-f]{16,64}")


class NoticeAckBody(msgspec.Struct, forbid_unknown_fields=True):
    """The notice the person accepted on the device (its digest and wording version) and when."""

    digest: str
    notice_version: int
    accepted_at: float


def parse_notice_ack(body: bytes) -> NoticeAckBody:
    example = msgspec.json.encode(NoticeAckBody("0123456789abcdef", 1, 1.7e9)).decode()
    try:
        ack = msgspec.json.decode(body or b"{}", type=NoticeAckBody)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise BadRequest(f"expected JSON like {example}: {error}") from error
    if not _DIGEST.fullmatch(ack.digest):
        raise BadRequest("digest must be 16 to 64 lowercase hexadecimal characters")
    if not 1 <= ack.notice_version <= 1_000_000 or not 0 <= ack.accepted_at <= 2**40:
        raise BadRequest("notice_version or accepted_at is out of range")
    return ack


class ConsentService:
    def __init__(
        self,
        store: ConsentStore,
        fleet_policy: Callable[[], CapturePolicy],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.fleet_policy = fleet_policy
        self.clock = clock

    def record_ack(self, device_id: str, ack: NoticeAckBody) -> dict[str, object]:
        now = self.clock()
        audit = audit_record(
            now,
            f"device:{device_id}",
            "notice_accepted",
            device_id,
            digest=ack.digest,
            notice_version=ack.notice_version,
            accepted_at=ack.accepted_at,
        )
        try:
            self.store.add_ack(device_id, ack.digest, ack.notice_version, ack.accepted_at, now, audit)
        except LookupError as error:
            raise NotFound(str(error)) from error
        return {"status": "recorded", "digest": ack.digest}

    def list_acks(self) -> list[dict[str, object]]:
        """Each device's newest acceptance, and whether it is the notice of the fleet policy in force
        (a device may hold an older one while the policy narrowed since: that still counts on it)."""
        current = notice_digest(self.fleet_policy())
        return [
            {
                "device_id": ack.device_id,
                "person_id": ack.person_id,
                "digest": ack.digest,
                "notice_version": ack.notice_version,
                "accepted_at": ack.accepted_at,
                "received_at": ack.received_at,
                "current_policy_notice": ack.digest == current,
            }
            for ack in self.store.latest_acks()
        ]
