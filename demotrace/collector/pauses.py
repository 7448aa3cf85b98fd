"""Pauses from the portal, and the pauses devices report.

An employee asks on the portal to pause (bounded by the fleet policy's ``pause_max_minutes``) or to
resume; the collector stores the request for every device of that person. Each device learns it with
its next policy sync (``GET /v1/device/policy`` answers ``pause_request``), applies it through its own
pause controller and reports what it did (``POST /v1/device/pauses``), as it reports pauses made on the
device itself. So the portal shows a device paused only once the device says so. Times only: a pause
event carries when, until when, and which portal request caused it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from demotrace.collector.errors import BadRequest
from demotrace.collector.store.pause_store import PauseEvent, PauseRequest, PauseStore
from demotrace.collector.upload_guard import audit_record
from demotrace.policy import CapturePolicy

MAX_PAUSE_EVENTS_BODY_BYTES = 16 * 1024
MAX_PAUSE_EVENTS = 50
PAUSE_ACTIONS = ("pause", "resume")
MAX_REQUEST_ID = 2**31 - 1  # an SQL INTEGER everywhere (PostgreSQL's is 32-bit)


class PauseEventBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["paused", "resumed", "expired"]
    at: float
    paused_until: float | None = None
    request_id: int | None = None


class PauseEventsBody(msgspec.Struct, forbid_unknown_fields=True):
    events: list[PauseEventBody]


def parse_pause_events(body: bytes) -> PauseEventsBody:
    try:
        report = msgspec.json.decode(body, type=PauseEventsBody)
    except msgspec.DecodeError as error:
        raise BadRequest(
            f'expected JSON {{"events": [{{"kind": "paused", "at": T, ...}}]}}: {error}'
        ) from error
    if len(report.events) > MAX_PAUSE_EVENTS:
        raise BadRequest(f"at most {MAX_PAUSE_EVENTS} pause events at once")
    for event in report.events:
        times = [event.at] + ([event.paused_until] if event.paused_until is not None else [])
        if not all(math.isfinite(value) and value >= 0 for value in times):
            raise BadRequest("pause event times must be finite and not negative")
        if event.request_id is not None and not 1 <= event.request_id <= MAX_REQUEST_ID:
            raise BadRequest(f"request_id must be between 1 and {MAX_REQUEST_ID}")
    return report


# --- pure decisions ----------------------------------------------------------------------------------


def portal_pause_minutes(requested: float | None, policy: CapturePolicy) -> float:
    """The pause a portal request gets: the policy's default when none is asked, never more than its
    maximum; zero, negative or not a number is refused."""
    if requested is None:
        return policy.pause_default_minutes
    if not math.isfinite(requested) or requested <= 0:
        raise BadRequest("a pause must last more than zero minutes")
    return min(float(requested), policy.pause_max_minutes)


def request_for_device(
    request: PauseRequest | None, applied_id: int | None, now: float
) -> dict[str, object] | None:
    """What a device's policy answer carries about the portal's latest request: nothing once the
    device has applied it, or once a pause has run out."""
    if request is None or (applied_id is not None and applied_id >= request.id):
        return None
    if request.action == "pause":
        assert request.paused_until is not None
        left = request.paused_until - now
        if left <= 0:
            return None
        return {"id": request.id, "action": "pause", "seconds_left": round(left, 1)}
    return {"id": request.id, "action": "resume", "seconds_left": 0.0}


@dataclass(frozen=True)
class DevicePauseState:
    state: Literal["recording", "paused", "exempt"]
    paused_until: float | None
    waiting_for_device: str | None  # "pause" or "resume": asked on the portal, not reported yet


def device_pause_state(
    exempt: bool, latest: PauseEvent | None, pending: PauseRequest | None, applied_id: int | None, now: float
) -> DevicePauseState:
    """A device's state as the collector knows it: exempt, or paused until the time it reported, or
    recording; and whether a portal request is still on its way to the device."""
    waiting = None
    if pending is not None and (applied_id is None or applied_id < pending.id):
        live = pending.action == "resume" or (pending.paused_until or 0) > now
        waiting = pending.action if live else None
    if exempt:
        return DevicePauseState("exempt", None, None)
    if latest is not None and latest.kind == "paused" and (latest.paused_until or 0) > now:
        return DevicePauseState("paused", latest.paused_until, waiting)
    return DevicePauseState("recording", None, waiting)


# --- the service ---------------------------------------------------------------------------------------


class PauseService:
    def __init__(
        self,
        store: PauseStore,
        person_of: Callable[[str], str | None],
        policy: Callable[[], CapturePolicy],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.person_of = person_of
        self.policy = policy
        self.clock = clock

    def request(self, person_id: str, action: str, minutes: float | None, actor: str) -> PauseRequest:
        """Store a portal pause (bounded by the policy) or resume for every device of the person."""
        if action not in PAUSE_ACTIONS:
            raise BadRequest("action must be pause or resume")
        now = self.clock()
        until = now + portal_pause_minutes(minutes, self.policy()) * 60.0 if action == "pause" else None
        audit = audit_record(now, actor, f"portal_{action}", None, person_id=person_id, paused_until=until)
        return self.store.add_request(person_id, action, now, until, audit)

    def for_device(self, device_id: str) -> dict[str, object] | None:
        person = self.person_of(device_id)
        if person is None:
            return None
        latest = self.store.latest_request(person)
        return request_for_device(latest, self.store.applied_request_id(device_id), self.clock())

    def record_events(self, device_id: str, report: PauseEventsBody) -> dict[str, object]:
        now = self.clock()
        events = [
            PauseEvent(device_id, event.kind, event.at, event.paused_until, event.request_id, now)
            for event in report.events
        ]
        self.store.add_events(device_id, events)
        return {"status": "recorded", "events": len(events)}

    def device_state(self, device_id: str, person_id: str, exempt: bool) -> DevicePauseState:
        return device_pause_state(
            exempt,
            self.store.latest_event(device_id),
            self.store.latest_request(person_id),
            self.store.applied_request_id(device_id),
            self.clock(),
        )

    def history(self, person_id: str, device_names: dict[str, str]) -> list[dict[str, object]]:
        """The person's pauses, newest first: what they asked on the portal and what their devices did."""
        rows: list[dict[str, object]] = []
        for request in self.store.requests(person_id):
            rows.append(
                {
                    "at": request.requested_at,
                    "where": "portal",
                    "what": "asked to pause" if request.action == "pause" else "asked to resume",
                    "until": request.paused_until,
                }
            )
        for event in self.store.events(person_id):
            what = {"paused": "paused", "resumed": "resumed", "expired": "pause ended"}[event.kind]
            rows.append(
                {
                    "at": event.at,
                    "where": device_names.get(event.device_id, event.device_id),
                    "what": what + (" (asked on the portal)" if event.request_id is not None else ""),
                    "until": event.paused_until,
                }
            )
        rows.sort(key=lambda row: float(row["at"]), reverse=True)  # type: ignore[arg-type]
        return rows
