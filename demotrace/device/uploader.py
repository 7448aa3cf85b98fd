"""Device side of the upload: send spooled records to the collector, on one background thread.

The uploader is one background thread that sleeps on ``Spool.committed`` until there is work, sends each
pending record (zstd-compressed MessagePack, one idempotent PUT per record: see ``record_upload``) and
marks it uploaded once the collector has it. A dead or failing collector loses nothing: records stay
pending and the thread backs off exponentially, with jitter, on an Event that stop() sets, so stopping is
immediate.

Given the CaptureGate, the uploader also obeys the policy and the device state through one pure
function, ``upload_rules.upload_decision``. It re-decides when the spool commits, when the gate changes
(it subscribes) and, for holds that end with time, after the computed wait.

A busy collector (503/429 with ``Retry-After``) is waited for like any outage, for as long as it asks
(capped at ``backoff_max``), and nothing is lost. A 403 ``exempt`` is not an outage: the uploader stops
for good and calls ``on_exempt``, which the agent wires to an immediate policy refresh; that refresh is
what applies the exemption (capture stops, the unsent spool is deleted, the collector is told).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from demotrace import __version__
from demotrace.device.client import TransportError, refusal_detail
from demotrace.device.enrollment import DeviceCredentials, collector_client
from demotrace.device.record_upload import (
    RESUMABLE_THRESHOLD_BYTES,
    UPLOAD_CHUNK_BYTES,
    DailyCapReached,
    ExemptAnswer,
    OutOfTime,
    RecordSender,
    RetryLater,
)
from demotrace.device.spool import Spool, SpoolBacklogReader, SpoolError
from demotrace.device.upload_progress import UploadProgress
from demotrace.device.upload_rules import (
    DEFAULT_UPLOAD_RULES,
    UNRESTRICTED,
    UPLOAD_STATE_FILE,
    DailyUploadCounter,
    UploadDecision,
    UploadPhase,
    UploadRules,
    backoff_delay,
    daily_cap_bytes,
    local_day,
    seconds_until_next_local_day,
    upload_decision,
)
from demotrace.policy import CaptureGate
from demotrace.protocol import DEVICE_REPORT_PATH
from demotrace.threads import name_os_thread
from demotrace.wording import plural

log = logging.getLogger(__name__)

# The device's health reaches the collector's fleet page at least this often while it uploads.
HEALTH_REPORT_INTERVAL_S = 900.0
MAX_REPORTED_ERROR_CHARS = 500


class UploadError(TransportError):
    """The collector could not be reached or refused to take records now; they remain in the spool."""


class DeviceExempt(UploadError):
    """The collector says this device is exempt from recording: it takes nothing from it, ever."""


class Uploader:
    """Sends a spool's pending records to the collector on one background thread.

    ``bytes_sent`` counts request bodies (compressed) that reached the collector, retries included;
    ``records_sent`` the records it accepted; ``records_rejected`` the records it refused for good
    (400/409/413/422), which are logged and then marked uploaded so they cannot block the queue: they
    stay in the spool file, and are no longer pending.

    Without a ``gate`` it sends whatever is committed at once, with no cap (a researcher's own collector,
    tests). With the gate it follows ``upload_decision`` and wakes on gate changes; ``last_decision``
    says why it is waiting. ``clock`` (wall time) is injectable to test the daily cap.

    When the collector answers 403 ``exempt``, the uploader sets ``exempt``, stops sending for good (the
    thread ends; a stop flush sends nothing) and calls ``on_exempt`` once, on its own thread: it must not
    block (PolicySync.refresh_soon fits).
    """

    def __init__(
        self,
        spool: Spool,
        credentials: DeviceCredentials,
        *,
        gate: CaptureGate | None = None,
        rules: UploadRules = DEFAULT_UPLOAD_RULES,
        clock: Callable[[], float] = time.time,
        state_path: Path | None = None,
        client: httpx.Client | None = None,
        request_timeout: float = 30.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        page_records: int = 64,
        page_bytes: int = 16 * 1024 * 1024,
        compression_level: int = 3,
        resumable_bytes: int = RESUMABLE_THRESHOLD_BYTES,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        on_exempt: Callable[[], None] | None = None,
    ) -> None:
        if chunk_bytes <= 0 or resumable_bytes < 0:
            raise ValueError("chunk_bytes must be positive and resumable_bytes not negative")
        self.spool = spool
        self.credentials = credentials
        self.gate = gate
        self.rules = rules
        self.clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.page_records = page_records
        self.page_bytes = page_bytes
        self.exempt = False
        self.on_exempt = on_exempt
        self.last_error: str | None = None
        self.last_decision: UploadDecision | None = None
        self.next_try: float | None = None  # wall time of the next attempt after a hold or a failure
        self.counter = DailyUploadCounter(state_path or spool.directory / UPLOAD_STATE_FILE)
        self._backlog = SpoolBacklogReader(spool.directory)
        self.progress = UploadProgress()  # what `status` shows while a burst goes
        self._client = collector_client(credentials, http=client, timeout=request_timeout)
        self._sender = RecordSender(
            self._client,
            credentials.device_id,
            self.counter,
            clock,
            request_timeout=request_timeout,
            resumable_bytes=resumable_bytes,
            chunk_bytes=chunk_bytes,
            compression_level=compression_level,
            progress=self.progress,
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # The day a body was found not to fit in the cap.
        self._full_day: str | None = None
        self._reported_disk_full = False
        self._last_health_report: float | None = None
        self._unreported_failure: str | None = None  # the last upload failure, until a report tells it

    @property
    def bytes_sent(self) -> int:
        return self._sender.bytes_sent

    @property
    def records_sent(self) -> int:
        return self._sender.records_sent

    @property
    def records_rejected(self) -> int:
        return self._sender.records_rejected

    # --- background thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread. An Uploader runs once: after stop(), make a new one."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("an Uploader can be started once")
        if self.gate is not None:
            self.gate.subscribe(self.wake)
        self._thread = threading.Thread(target=self._run, name="demotrace-uploader", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """The background thread is alive (started, not stopped, and not ended by an exempt answer)."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Decide again now (the gate calls this on every change; a day change can too)."""
        # The thread sleeps on the spool's commit Event: a spurious wake-up only costs one decision.
        self.spool.committed.set()

    def stop(self, flush: bool = True, timeout: float = 10.0) -> int:
        """Stop the thread; with ``flush``, try to send what is pending until ``timeout`` runs out.

        The flush skips the burst threshold but still obeys the network, battery and daily-cap holds.
        Returns how many records are still pending (they go on the next start). Safe to call twice.
        """
        if self._closed:
            return self.spool.pending_count()
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self.wake()  # the thread sleeps on the commit Event: wake it so it sees the stop
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                # Stuck in a request to a hung collector: leave it (a daemon) rather than send concurrently.
                log.warning("uploader did not stop within %.1f s; not flushing", timeout)
                return self.spool.pending_count()
            self._thread = None
        if flush and not self.exempt:
            try:
                self.last_decision = self._drain(lambda: time.monotonic() >= deadline, deadline, "final")
            except RetryLater as retry:
                self.last_error = retry.reason
                self._unreported_failure = self.last_error
                log.info("final upload stopped: %s", retry.reason)
            except ExemptAnswer:
                self._exempted()
            except SpoolError as error:
                log.error("final upload stopped: %s", error)
            with contextlib.suppress(SpoolError):
                self.report_drops()
        self.close()
        return self.spool.pending_count()

    def close(self) -> None:
        """Release the HTTP connections (if this uploader opened them) and save today's count."""
        if self._closed:
            return
        self._closed = True
        self.counter.save()
        self._backlog.close()
        self._client.close()

    def _run(self) -> None:
        name_os_thread()
        failures = 0
        while not self._stopping.is_set():
            # Clear before reading: a commit that lands while we drain sets it again, so no work is missed.
            self.spool.committed.clear()
            try:
                hold = self._drain(self._stopping.is_set, None, "waiting")
                failures = 0
                self.last_error = None
                self.report_drops()
            except ExemptAnswer:
                self._exempted()
                return  # nothing will ever be taken again: retrying would only knock on a closed door
            except RetryLater as retry:
                failures += 1
                delay = self._backoff_delay(failures, retry.retry_after)
                self.last_error = retry.reason
                self._unreported_failure = self.last_error
                self.next_try = self.clock() + delay
                log.warning("upload paused, retrying in %.1f s: %s", delay, retry.reason)
                if self._stopping.wait(delay):
                    break
                continue  # retry at once after the pause, commit or not
            except Exception as error:  # a spool that will not decrypt, a bug: never let the thread die
                failures += 1
                delay = self._backoff_delay(failures, None)
                self.last_error = f"{type(error).__name__}: {error}"
                self._unreported_failure = self.last_error
                self.next_try = self.clock() + delay
                log.exception("upload failed unexpectedly, retrying in %.1f s", delay)
                if self._stopping.wait(delay):
                    break
                continue
            # The next try first: status() reads the decision, then the next try, from another thread.
            self.next_try = None if hold.recheck_after_s is None else self.clock() + hold.recheck_after_s
            self.last_decision = hold
            # stop() sets _stopping before waking us: if our clear() above swallowed its wake-up,
            # this check still sees the stop.
            if not self._stopping.is_set():
                # A commit, a gate change or stop() wakes us; a hold that ends with time (burst age,
                # battery backlog age, the next day) also sets a timeout. No polling in between.
                self.spool.committed.wait(hold.recheck_after_s)

    def report_drops(self) -> bool:
        """Tell the collector what the spool had to drop since the last report (quota, full disk), and
        this device's health for the fleet page (agent version, spool backlog, last upload error), when
        something changed or HEALTH_REPORT_INTERVAL_S passed; True when it was told. A failure is left
        for the next round."""
        counts = self.spool.drops()
        disk_full = self.spool.disk_full
        health_due = (
            self._last_health_report is None
            or time.monotonic() - self._last_health_report >= HEALTH_REPORT_INTERVAL_S
            or self._unreported_failure is not None
        )
        if not (
            counts.unreported_quota
            or counts.unreported_disk_full
            or disk_full != self._reported_disk_full
            or health_due
        ):
            return False
        report = {
            "frames_dropped_quota": counts.unreported_quota,
            "frames_dropped_disk_full": counts.unreported_disk_full,
            "disk_full": disk_full,
            "agent_version": __version__,
            "spool_backlog": self.spool.pending_count(),
            "last_error": (self._unreported_failure or "")[:MAX_REPORTED_ERROR_CHARS] or None,
        }
        try:
            answer = self._client.request("POST", DEVICE_REPORT_PATH, json=report, timeout=10.0)
        except TransportError as error:
            log.info("drop report not sent: %s", error)
            return False
        if answer.status_code != 200:
            log.info("drop report refused (%d): %s", answer.status_code, refusal_detail(answer))
            return False
        self.spool.drops_reported(counts)
        self._reported_disk_full = disk_full
        self._last_health_report = time.monotonic()
        self._unreported_failure = None
        return True

    def status(self) -> dict[str, Any]:
        """Why pending records wait and when they go next, for ``demotrace status``.

        ``upload_wait``: the reason of the last hold, or the last failure while retrying; None while
        sending or with nothing to send. ``upload_next_try``: wall time of the next attempt, if known
        (a hold that ends by itself or a retry); None means "as soon as the reason goes away"."""
        return {
            **self._wait_status(),
            **self._volume_status(),
            "upload_progress": self.progress.snapshot(),
        }

    def _wait_status(self) -> dict[str, Any]:
        decision = self.last_decision
        if not self.running and not self.exempt:
            return {"upload_wait": "the uploader is stopped", "upload_next_try": None}
        if self.last_error is not None:
            return {"upload_wait": self.last_error, "upload_next_try": self.next_try}
        if decision is None or decision.send or decision.reason == "nothing to send":
            return {"upload_wait": None, "upload_next_try": None}
        return {"upload_wait": decision.reason, "upload_next_try": self.next_try}

    def _volume_status(self) -> dict[str, Any]:
        """Compressed bytes sent today, and today's cap (None without a gate: no cap)."""
        sent = self.counter.sent_on(local_day(self.clock()))
        cap = daily_cap_bytes(self.gate.policy) if self.gate is not None else None
        return {"uploaded_today_bytes": sent, "daily_cap_bytes": cap}

    def _exempted(self) -> None:
        """The collector said this device is exempt: stop uploading and let the exemption be applied."""
        first = not self.exempt
        self.exempt = True
        self.last_error = "the collector says this device is exempt from recording: uploads stopped"
        self.last_decision = UploadDecision(False, 0, self.last_error)
        if not first:
            return
        log.warning("%s", self.last_error)
        if self.on_exempt is not None:
            try:
                self.on_exempt()
            except Exception:  # the exemption still applies at the next policy refresh
                log.exception("could not trigger a policy refresh after the exempt answer")

    def _backoff_delay(self, failures: int, retry_after: float | None) -> float:
        return backoff_delay(failures, retry_after, self.backoff_initial, self.backoff_max, random.random())

    # --- deciding ----------------------------------------------------------------------------------

    def decide(self, phase: UploadPhase = "waiting") -> UploadDecision:
        """What upload_decision says now for this spool, gate and day."""
        if self.gate is None:
            return UNRESTRICTED
        now = self.clock()
        backlog = self._backlog.read()
        age = None if backlog.oldest_created is None else max(0.0, now - backlog.oldest_created)
        day = local_day(now)
        decision = upload_decision(
            self.gate.policy,
            self.gate.state,
            backlog.bytes,
            age,
            self.counter.sent_on(day),
            now,
            phase=phase,
            rules=self.rules,
        )
        if decision.send and self._full_day == day:
            return UploadDecision(
                False,
                0,
                "daily upload cap: the next record does not fit in what is left today",
                recheck_after_s=seconds_until_next_local_day(now),
            )
        return decision

    # --- sending -----------------------------------------------------------------------------------

    def upload_pending(self, timeout: float | None = None) -> int:
        """Send everything pending now, on the calling thread; returns how many records were accepted.

        Skips the burst threshold but obeys the gate's holds (``last_decision`` says which). Raises
        UploadError if the collector cannot be reached or refuses for now (what was sent stays sent).
        Not to be called while the background thread runs.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("upload_pending() needs an uploader that is neither running nor stopped")
        if self.exempt:
            raise DeviceExempt(self.last_error or "this device is exempt from recording")
        deadline = None if timeout is None else time.monotonic() + timeout
        sent_before = self._sender.records_sent

        def out_of_time() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        try:
            self.last_decision = self._drain(out_of_time, deadline, "final")
        except RetryLater as retry:
            self.last_error = retry.reason
            self._unreported_failure = self.last_error
            raise UploadError(
                f"{retry.reason}; {plural(self.spool.pending_count(), 'record')} left in the spool"
            ) from None
        except ExemptAnswer:
            self._exempted()
            raise DeviceExempt(
                f"{self.last_error}; the next policy refresh deletes the"
                f" {plural(self.spool.pending_count(), 'record')} left in the spool"
            ) from None
        return self._sender.records_sent - sent_before

    def _drain(
        self, should_stop: Callable[[], bool], deadline: float | None, phase: UploadPhase
    ) -> UploadDecision:
        """Send pending records, oldest first, while the decision allows; returns the one that stopped it."""
        try:
            return self._drain_pages(should_stop, deadline, phase)
        finally:
            self.progress.burst_ended(self.clock())

    def _drain_pages(
        self, should_stop: Callable[[], bool], deadline: float | None, phase: UploadPhase
    ) -> UploadDecision:
        in_burst = False
        while not should_stop():
            decision = self.decide(phase)
            if not decision.send:
                return decision  # the caller publishes a hold together with its next try
            self.last_decision = decision
            page = self.spool.pending(limit=self.page_records, max_bytes=self.page_bytes)
            if not page:
                return UploadDecision(False, 0, "nothing to send")
            if phase == "waiting":
                phase = "burst"  # once started, a burst goes on until the backlog is empty
            left = self._backlog.read().records
            if in_burst:
                self.progress.records_left(left)
            else:
                self.progress.burst_started(self.clock(), left)
                in_burst = True
            self._sender.allowance = decision.max_bytes
            done: list[str] = []
            try:
                for item in page:
                    if should_stop():
                        break
                    self._sender.send(item, deadline)
                    done.append(item.record_id)
            except DailyCapReached:
                self._full_day = local_day(self.clock())
            except OutOfTime:
                break
            finally:
                # One spool transaction per page, not per record; a crash before it only means re-sends,
                # which the collector answers with 200.
                if done:
                    self.spool.mark_uploaded(done)
                self.counter.save()
        return UploadDecision(False, 0, "stopping")


def upload_pending(
    spool: Spool,
    credentials: DeviceCredentials,
    *,
    timeout: float | None = None,
    client: httpx.Client | None = None,
) -> int:
    """Send everything pending once, on this thread; returns the records accepted (raises UploadError)."""
    uploader = Uploader(spool, credentials, client=client)
    try:
        return uploader.upload_pending(timeout)
    finally:
        uploader.close()
