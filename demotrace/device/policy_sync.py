"""Device side of the fleet policy and of exemptions.

``PolicySync`` fetches ``GET /v1/device/policy`` every ``policy.refresh_seconds`` (at most a minute) and
applies it to the CaptureGate. When the collector says the device is exempt, capture stops
(``gate.update_state(exempt=True)``), every record not yet uploaded is deleted from the spool, and the
collector is told how many (it audits that). A collector that cannot be reached changes nothing: the
last policy (kept in memory, and in ``cache_file`` if given, so it survives a restart) stays in force.
``refresh_soon()`` asks for a round now: the uploader calls it when the collector answers ``exempt``.

Pauses asked for on the portal come with the policy (``pause_request``): once a pause controller is
attached (``attach_pause``) the round applies each new one through it. Every pause, resume and expiry
the controller makes (``note_pause_change``, its listener) is reported to the collector at the start
of the next round, which follows at once: times only, and which portal request caused it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec

from demotrace.device.client import CollectorClient, CollectorUnreachable, TransportError, refusal_detail
from demotrace.device.enrollment import DeviceCredentials, collector_client
from demotrace.device.spool import Spool
from demotrace.files import write_private_file
from demotrace.notice import NoticeAck
from demotrace.policy import CaptureGate, CapturePolicy, PolicyError, parse_policy
from demotrace.protocol import (
    DEVICE_EXEMPTION_APPLIED_PATH,
    DEVICE_NOTICE_ACK_PATH,
    DEVICE_PAUSES_PATH,
    DEVICE_POLICY_PATH,
    EXEMPTIONS_PATH,
)
from demotrace.threads import name_os_thread

MAX_REFRESH_SECONDS = 60.0
MAX_UNSENT_PAUSE_EVENTS = 50  # the collector's limit per report; older ones are dropped past it

log = logging.getLogger(__name__)


class PolicySyncError(TransportError):
    """The collector could not be asked or refused; the message says which and why."""


class PortalPauseRequest(msgspec.Struct):
    """A pause or resume asked for on the portal, for every device of this person."""

    id: int
    action: str  # "pause" or "resume"
    seconds_left: float = 0.0


class PauseTarget(Protocol):
    """What applies a portal pause on the device: the PauseController."""

    def pause(self, minutes: float | None = None) -> float: ...

    def resume(self) -> bool: ...


class DevicePolicyAnswer(msgspec.Struct):
    policy: str
    exempt: bool = False
    exemption_status: str = "none"
    exemption_request_id: int | None = None
    policy_source: str = "fleet"
    policy_updated_at: float | None = None
    pause_request: PortalPauseRequest | None = None


@contextlib.contextmanager
def _collector(credentials: DeviceCredentials, client: CollectorClient | None) -> Iterator[CollectorClient]:
    """``client`` itself, or a client opened (and closed) for this one call."""
    if client is not None:
        yield client
        return
    with collector_client(credentials) as own:
        yield own


def _call(
    client: CollectorClient, method: str, path: str, timeout: float, body: dict[str, Any] | None = None
) -> httpx.Response:
    try:
        return client.request(method, path, json=body, timeout=timeout)
    except CollectorUnreachable as error:
        raise PolicySyncError(str(error)) from error


def fetch_device_policy(
    credentials: DeviceCredentials, *, client: CollectorClient | None = None, timeout: float = 10.0
) -> DevicePolicyAnswer:
    with _collector(credentials, client) as collector:
        response = _call(collector, "GET", DEVICE_POLICY_PATH, timeout)
    if response.status_code != 200:
        raise PolicySyncError(
            f"collector answered {response.status_code} for the policy: {refusal_detail(response)}"
        )
    try:
        return msgspec.json.decode(response.content, type=DevicePolicyAnswer)
    except msgspec.DecodeError as error:
        raise PolicySyncError(f"collector gave an unreadable policy answer: {error}") from error


def request_exemption(
    credentials: DeviceCredentials,
    reason: str,
    delete_collected: bool = False,
    *,
    client: CollectorClient | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Ask the collector to exempt this device; returns the stored request (id, status...)."""
    body = {"reason": reason, "delete_collected": delete_collected}
    with _collector(credentials, client) as collector:
        response = _call(collector, "POST", EXEMPTIONS_PATH, timeout, body)
    if response.status_code != 201:
        raise PolicySyncError(
            f"collector refused the request ({response.status_code}): {refusal_detail(response)}"
        )
    answer: dict[str, Any] = response.json()
    return answer


def report_exemption_applied(
    credentials: DeviceCredentials,
    deleted_unsent: int,
    *,
    client: CollectorClient | None = None,
    timeout: float = 10.0,
) -> None:
    with _collector(credentials, client) as collector:
        response = _call(
            collector, "POST", DEVICE_EXEMPTION_APPLIED_PATH, timeout, {"deleted_unsent": deleted_unsent}
        )
    if response.status_code != 200:
        raise PolicySyncError(f"collector answered {response.status_code}: {refusal_detail(response)}")


def report_notice_ack(
    credentials: DeviceCredentials,
    ack: NoticeAck,
    *,
    client: CollectorClient | None = None,
    timeout: float = 10.0,
) -> None:
    """Tell the collector which notice this device's person accepted, and when."""
    body = {"digest": ack.digest, "notice_version": ack.version, "accepted_at": ack.accepted_at}
    with _collector(credentials, client) as collector:
        response = _call(collector, "POST", DEVICE_NOTICE_ACK_PATH, timeout, body)
    if response.status_code != 201:
        raise PolicySyncError(f"collector answered {response.status_code}: {refusal_detail(response)}")


def refresh_interval(policy: CapturePolicy, explicit: float | None) -> float:
    """Seconds between refreshes: the explicit interval if given, else the policy's, at most a minute."""
    if explicit is not None:
        return explicit
    return min(policy.refresh_seconds, MAX_REFRESH_SECONDS)


class PolicySync:
    """Keeps the gate's policy and exemption in step with the collector, on one background thread.

    Every wait is on one Event with the refresh interval as timeout: stop() and refresh_soon() set it,
    so both act at once. ``refresh_once()`` does one round on the calling thread (the thread calls it too).
    With ``follow_fleet_policy=False`` (the device has a local policy file) only the exemption is applied.
    """

    def __init__(
        self,
        credentials: DeviceCredentials,
        gate: CaptureGate,
        spool: Spool,
        interval: float | None = None,
        *,
        client: httpx.Client | None = None,
        cache_file: Path | None = None,
        request_timeout: float = 10.0,
        follow_fleet_policy: bool = True,
    ) -> None:
        if interval is not None and interval <= 0:
            raise ValueError("interval must be positive")
        self.credentials = credentials
        self.gate = gate
        self.spool = spool
        self.interval = interval
        # One client for every round, not one per request: see CollectorClient.
        self.client = collector_client(credentials, http=client, timeout=request_timeout)
        self.cache_file = cache_file
        self.request_timeout = request_timeout
        self.follow_fleet_policy = follow_fleet_policy
        self.last_error: str | None = None
        self.last_answer: DevicePolicyAnswer | None = None
        self.refreshes = 0  # completed rounds, successful or not: lets a caller wait for the next one
        self.round_done = threading.Condition()
        self._unreported_deletions = 0
        self._applied_reported = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and refresh_soon()
        self._thread: threading.Thread | None = None
        self._pause_target: PauseTarget | None = None
        self._pause_lock = threading.Lock()
        self._unsent_pauses: list[dict[str, Any]] = []
        self._applying_request: tuple[int, int] | None = None  # (thread ident, portal request id)
        self._applied_request_id: int | None = None
        if cache_file is not None:
            self._apply_cached(cache_file)

    # --- thread -------------------------------------------------------------------------------------

    def start(self) -> PolicySync:
        if self._thread is not None:
            raise RuntimeError("PolicySync already started")
        self._thread = threading.Thread(target=self._run, name="demotrace-policy-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.client.close()

    def refresh_soon(self) -> None:
        """Do a round now rather than at the next interval; returns at once if the thread runs.

        Without a running thread the round happens on the calling thread.
        """
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
        elif not self._stop.is_set():
            self.refresh_once()

    def _run(self) -> None:
        name_os_thread()
        while True:
            # Cleared before the stop check and the round: a stop() or refresh_soon() from here on
            # leaves the Event set, so the wait below cannot swallow it.
            self._wake.clear()
            if self._stop.is_set():
                return
            self.refresh_once()
            # The one timed wait in the device: the collector cannot push, so we ask again later.
            self._wake.wait(refresh_interval(self.gate.policy, self.interval))

    def wait_for_rounds(self, count: int, timeout: float) -> bool:
        """Block until ``count`` rounds have completed (for callers that must know a refresh happened)."""
        with self.round_done:
            return self.round_done.wait_for(lambda: self.refreshes >= count, timeout)

    # --- pauses ---------------------------------------------------------------------------------------

    def attach_pause(self, target: PauseTarget) -> None:
        """Apply portal pauses through ``target`` from now on (a round follows at once)."""
        self._pause_target = target
        self._wake.set()

    def note_pause_change(self, kind: str, paused_until: float | None) -> None:
        """A PauseController listener: remember the change for the collector and send it now."""
        applying = self._applying_request
        request_id = applying[1] if applying and applying[0] == threading.get_ident() else None
        event = {"kind": kind, "at": time.time(), "paused_until": paused_until, "request_id": request_id}
        with self._pause_lock:
            self._unsent_pauses = [*self._unsent_pauses, event][-MAX_UNSENT_PAUSE_EVENTS:]
        self._wake.set()

    def _send_pauses(self) -> None:
        with self._pause_lock:
            events = list(self._unsent_pauses)
        if not events:
            return
        response = _call(self.client, "POST", DEVICE_PAUSES_PATH, self.request_timeout, {"events": events})
        if response.status_code != 200:
            raise PolicySyncError(f"collector answered {response.status_code}: {refusal_detail(response)}")
        with self._pause_lock:
            self._unsent_pauses = self._unsent_pauses[len(events) :]

    def _apply_pause_request(self, request: PortalPauseRequest | None) -> None:
        target = self._pause_target
        if request is None or target is None or request.id == self._applied_request_id:
            return
        self._applying_request = (threading.get_ident(), request.id)
        try:
            if request.action == "pause" and request.seconds_left > 0:
                target.pause(request.seconds_left / 60.0)
            elif request.action == "resume" and not target.resume():
                # Nothing was paused: say so anyway, or the collector would keep asking.
                self.note_pause_change("resumed", None)
        finally:
            self._applying_request = None
        self._applied_request_id = request.id

    # --- one round ------------------------------------------------------------------------------------

    def refresh_once(self) -> DevicePolicyAnswer | None:
        """Fetch and apply; returns the answer, or None (and ``last_error`` says why) if it failed."""
        try:
            self._send_pauses()
            answer = fetch_device_policy(self.credentials, client=self.client, timeout=self.request_timeout)
            # Cached first: an exemption must hold across a restart even if reporting it fails below.
            self._store_cache(answer)
            self.last_answer = answer
            self.last_error = None
            self._apply(answer)
            return answer
        except PolicySyncError as error:
            self.last_error = str(error)
            log.warning("policy refresh failed, keeping the current policy: %s", error)
            return None
        except Exception as error:  # never let the thread die: a bug here must not stop exemptions later
            self.last_error = f"{type(error).__name__}: {error}"
            log.exception("policy refresh failed unexpectedly")
            return None
        finally:
            with self.round_done:
                self.refreshes += 1
                self.round_done.notify_all()

    def _apply(self, answer: DevicePolicyAnswer) -> None:
        if self.follow_fleet_policy:
            self._apply_policy(answer.policy)
        if answer.exempt:
            self._apply_exemption()
        else:
            self._apply_pause_request(answer.pause_request)

    def _apply_policy(self, text: str) -> None:
        try:
            policy = parse_policy(text, source="collector policy")
        except PolicyError as error:
            # Keep what we have: a broken policy from the server must not open up capture.
            log.error("ignoring the collector's policy: %s", error)
            self.last_error = str(error)
        else:
            if policy != self.gate.policy:
                self.gate.set_policy(policy)

    def _apply_exemption(self) -> None:
        if not self.gate.state.exempt:
            log.warning("this device is exempt from recording: capture stops and unsent records are deleted")
            self.gate.update_state(exempt=True)
        # Every round, not only the first: a record written while the recorder was stopping goes too.
        deleted = self.spool.delete_unsent()
        self._unreported_deletions += deleted
        if self._applied_reported and self._unreported_deletions == 0:
            return
        report_exemption_applied(
            self.credentials, self._unreported_deletions, client=self.client, timeout=self.request_timeout
        )
        self._applied_reported = True
        self._unreported_deletions = 0

    # --- cache ----------------------------------------------------------------------------------------

    def _apply_cached(self, path: Path) -> None:
        try:
            answer = msgspec.json.decode(path.read_bytes(), type=DevicePolicyAnswer)
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as error:
            log.warning("ignoring unreadable policy cache %s: %s", path, error)
            return
        try:
            if self.follow_fleet_policy:
                self.gate.set_policy(parse_policy(answer.policy, source=str(path)))
        except PolicyError as error:
            log.warning("ignoring cached policy: %s", error)
        if answer.exempt:
            # Exempt before the collector is reached again: nothing may be recorded meanwhile.
            self.gate.update_state(exempt=True)
        self.last_answer = answer

    def _store_cache(self, answer: DevicePolicyAnswer) -> None:
        if self.cache_file is None or answer == self.last_answer:
            return
        path = self.cache_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(path, msgspec.json.encode(answer), temp_prefix=".policy-")
