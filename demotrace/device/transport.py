"""Device side of the upload: enrol with a collector, keep the credentials, and send spooled records.

The uploader is one background thread that sleeps on ``Spool.committed`` until there is work, sends each
pending record (zstd-compressed MessagePack, one idempotent PUT per record) and marks it uploaded once
the collector has it. A dead or failing collector loses nothing: records stay pending and the thread
backs off exponentially, with jitter, on an Event that stop() sets, so stopping is immediate.

Given the CaptureGate, the uploader also obeys the policy and the device state through one pure
function, ``upload_decision``: no uploads on a metered network (unless ``upload_on_metered``), none on
battery until the backlog is large or old (none at all on a low battery unless ``low_battery_mode`` is
"normal"), at most ``daily_upload_mb`` a local day (counted in a 0600 file next to the spool, so a
restart does not reset it), and in bursts rather than a trickle. It re-decides when the spool commits,
when the gate changes (it subscribes) and, for holds that end with time, after the computed wait.

Records whose compressed body passes ``resumable_bytes`` go through a resumable upload session
(``POST /v1/uploads``, then ``PUT`` chunks with ``Content-Range``): a broken link, a stop or the daily
cap only pauses them, and the next attempt goes on from the collector's offset.

A busy collector (503/429 with ``Retry-After``) is waited for like any outage, for as long as it asks
(capped at ``backoff_max``), and nothing is lost. A 403 ``exempt`` is not an outage: the uploader stops
for good and calls ``on_exempt``, which the agent wires to an immediate policy refresh; that refresh is
what applies the exemption (capture stops, the unsent spool is deleted, the collector is told).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

import httpx
import msgspec
import zstandard

from demotrace import __version__
from demotrace.device.paths import config_dir
from demotrace.device.spool import SPOOL_FILE, Spool, SpooledRecord, SpoolError
from demotrace.policy import CaptureGate, CapturePolicy, DeviceState
from demotrace.threads import name_os_thread

RECORD_MEDIA_TYPE = "application/x-demotrace-record"
ENROLLMENT_SECRET_HEADER = "X-Enrollment-Secret"
CREDENTIALS_FILE = "device.json"
UPLOAD_STATE_FILE = "upload-state.json"  # next to the spool: bytes sent today
USER_AGENT = f"demotrace/{__version__}"

# Answers that condemn the record itself: sending it again cannot succeed. Anything else (5xx, 401,
# 404 from a misconfigured proxy...) is about the server or the link, so the record waits and is retried.
REJECTED_STATUSES = frozenset({400, 409, 413, 422})

KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000  # daily_upload_mb counts like data plans do: decimal megabytes
RESUMABLE_THRESHOLD_BYTES = 1 * MiB
UPLOAD_CHUNK_BYTES = 256 * KiB
# How often one record may lose its session (expired, offset moved, body corrupt) before we back off.
_MAX_SESSION_RESTARTS = 3

log = logging.getLogger(__name__)


class TransportError(Exception):
    """Enrolment, credentials or upload failed; the message says why and what to do."""


class EnrollmentError(TransportError):
    pass


class CredentialsError(TransportError):
    pass


class UploadError(TransportError):
    """The collector could not be reached or refused to take records now; they remain in the spool."""


class DeviceExempt(UploadError):
    """The collector says this device is exempt from recording: it takes nothing from it, ever."""


class DeviceCredentials(msgspec.Struct, frozen=True):
    server_url: str
    device_id: str
    token: str


class _EnrollResponse(msgspec.Struct):
    device_id: str
    token: str


def default_credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def _normalise_server_url(server_url: str) -> str:
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"server URL must look like https://host[:port], not {server_url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        log.warning("collector %s is plain HTTP: the device token and records travel unencrypted", server_url)
    return server_url.strip().rstrip("/")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _error_detail(response: httpx.Response) -> str:
    """The collector's ``detail`` message if the body has one, else the start of the body."""
    try:
        detail = msgspec.json.decode(response.content).get("detail")
    except (msgspec.DecodeError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200]


def enroll(
    server_url: str, device_name: str, secret: str | None = None, *, timeout: float = 30.0
) -> DeviceCredentials:
    """Register this device with a collector and return the credentials to upload with."""
    base_url = _normalise_server_url(server_url)
    headers = {"User-Agent": USER_AGENT}
    if secret is not None:
        headers[ENROLLMENT_SECRET_HEADER] = secret
    try:
        response = httpx.post(
            f"{base_url}/v1/enroll", json={"device_name": device_name}, headers=headers, timeout=timeout
        )
    except httpx.HTTPError as error:
        raise EnrollmentError(f"cannot reach collector {base_url}: {error}") from error
    if response.status_code != 201:
        raise EnrollmentError(
            f"collector {base_url} refused enrolment ({response.status_code}): {_error_detail(response)}"
        )
    try:
        answer = msgspec.json.decode(response.content, type=_EnrollResponse)
    except msgspec.DecodeError as error:
        raise EnrollmentError(f"collector {base_url} gave an unreadable enrolment answer: {error}") from error
    return DeviceCredentials(server_url=base_url, device_id=answer.device_id, token=answer.token)


def save_credentials(credentials: DeviceCredentials, path: Path | None = None) -> Path:
    """Write the credentials as JSON, readable by the owner only (0600, folder 0700); returns the path."""
    path = path or default_credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file 0600 from the start: the token is never readable by others, not even briefly.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".device-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.format(msgspec.json.encode(credentials)) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def load_credentials(path: Path | None = None) -> DeviceCredentials:
    path = path or default_credentials_path()
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise CredentialsError(f"no device credentials at {path}: enrol this device first") from error
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): it holds the device token", path, mode & 0o777)
    try:
        return msgspec.json.decode(data, type=DeviceCredentials)
    except msgspec.DecodeError as error:
        raise CredentialsError(f"device credentials {path} are unreadable: {error}") from error


# --- when to upload: a pure decision over policy, device state, backlog and today's volume ----------

UploadPhase = Literal["waiting", "burst", "final"]
"""``waiting``: nothing is being sent, every threshold applies; ``burst``: a burst is under way and goes
on until the backlog is empty (size and age thresholds no longer apply); ``final``: the flush at stop,
which skips the burst threshold but still respects the network, the battery and the daily cap."""


@dataclass(frozen=True)
class UploadRules:
    """Thresholds that are ours, not the policy's. Backlog sizes count spooled (uncompressed) bytes."""

    # Send in bursts: the radio wakes up once for a good amount of data rather than every few seconds.
    burst_bytes: int = 256 * KiB
    burst_age_s: float = 5 * 60.0
    # On battery, wait for mains power unless the backlog grows large or old: a laptop unplugged all day
    # must not fill its spool, and the data should reach the collector within a working session.
    battery_backlog_bytes: int = 8 * MiB
    battery_age_s: float = 2 * 3600.0


DEFAULT_UPLOAD_RULES = UploadRules()
IMMEDIATE_UPLOAD_RULES = UploadRules(burst_bytes=0, burst_age_s=0.0)


@dataclass(frozen=True)
class UploadDecision:
    send: bool
    max_bytes: int | None  # compressed bytes that may go now (what is left of today's cap); None: no cap
    reason: str
    recheck_after_s: float | None = None  # a hold that ends with time: decide again after this long


def local_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(now))


def seconds_until_next_local_day(now: float) -> float:
    today = time.localtime(now)
    # mktime normalises day 32 into the next month and, with isdst=-1, finds the right DST offset.
    midnight = time.mktime((today.tm_year, today.tm_mon, today.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    return max(1.0, midnight - now)


def daily_cap_bytes(policy: CapturePolicy) -> int:
    return max(0, int(policy.daily_upload_mb * MB))


def upload_decision(
    policy: CapturePolicy,
    state: DeviceState,
    backlog_bytes: int,
    oldest_pending_age_s: float | None,
    sent_today_bytes: int,
    now: float,
    *,
    phase: UploadPhase = "waiting",
    rules: UploadRules = DEFAULT_UPLOAD_RULES,
) -> UploadDecision:
    """May the uploader send now, and how much? Holds are checked from the hardest to the softest."""
    if state.exempt:
        return UploadDecision(False, 0, "this device is exempt from recording: nothing is uploaded")
    if backlog_bytes <= 0:
        return UploadDecision(False, 0, "nothing to send")
    age = oldest_pending_age_s or 0.0
    if state.metered_network and not policy.upload_on_metered:
        return UploadDecision(False, 0, "metered network: uploads wait for an unmetered one")
    if state.on_battery:
        low = state.battery_percent is not None and state.battery_percent < policy.low_battery_percent
        if low and policy.low_battery_mode != "normal":
            return UploadDecision(
                False, 0, f"battery low ({state.battery_percent:.0f}%): uploads wait for mains power"
            )
        large_or_old = backlog_bytes >= rules.battery_backlog_bytes or age >= rules.battery_age_s
        if phase != "burst" and not large_or_old:
            return UploadDecision(
                False,
                0,
                "on battery: uploads wait for mains power or a large or old backlog",
                recheck_after_s=rules.battery_age_s - age,
            )
    remaining = daily_cap_bytes(policy) - sent_today_bytes
    if remaining <= 0:
        return UploadDecision(
            False,
            0,
            f"daily upload cap of {policy.daily_upload_mb:g} MB reached: the backlog waits for tomorrow",
            recheck_after_s=seconds_until_next_local_day(now),
        )
    if phase == "waiting" and backlog_bytes < rules.burst_bytes and age < rules.burst_age_s:
        return UploadDecision(
            False,
            0,
            f"waiting for a burst ({backlog_bytes} of {rules.burst_bytes} bytes)",
            recheck_after_s=rules.burst_age_s - age,
        )
    return UploadDecision(True, remaining, "sending")


UNRESTRICTED = UploadDecision(True, None, "no upload policy")


@dataclass(frozen=True)
class Backlog:
    records: int
    bytes: int
    oldest_created: float | None  # wall time the oldest pending record was spooled


class _BacklogReader:
    """Reads the size and age of a spool's pending records from their plaintext columns.

    Its own SQLite connection (WAL lets it read while the recorder writes), query-only: one aggregate,
    no decryption, cheap enough to run on every wake-up.
    """

    def __init__(self, spool_directory: Path) -> None:
        self._db = sqlite3.connect(spool_directory / SPOOL_FILE, check_same_thread=False)
        self._db.execute("PRAGMA query_only = ON")

    def read(self) -> Backlog:
        try:
            count, size, oldest = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created) FROM records"
                " WHERE uploaded_at IS NULL AND held = 0"
            ).fetchone()
        except sqlite3.Error as error:
            raise SpoolError(f"cannot read the spool backlog: {error}") from error
        return Backlog(records=int(count), bytes=int(size), oldest_created=oldest)

    def close(self) -> None:
        self._db.close()


class _DailyState(msgspec.Struct):
    day: str
    sent_bytes: int


class DailyUploadCounter:
    """Compressed bytes sent per local day, kept in a small 0600 JSON file so restarts do not reset it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = _DailyState(day="", sent_bytes=0)
        self._dirty = False
        try:
            self._state = msgspec.json.decode(path.read_bytes(), type=_DailyState)
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError) as error:
            # Starting from zero may let one day pass its cap once; refusing to upload forever is worse.
            log.warning("upload counter %s is unreadable (%s): counting today from zero", path, error)

    def sent_on(self, day: str) -> int:
        return self._state.sent_bytes if self._state.day == day else 0

    def add(self, day: str, sent_bytes: int) -> None:
        self._state = _DailyState(day=day, sent_bytes=self.sent_on(day) + sent_bytes)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        fd, temp_name = tempfile.mkstemp(dir=self.path.parent, prefix=".upload-state-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(msgspec.json.encode(self._state))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        self._dirty = False


class _RetryLater(Exception):
    """Sending failed for a reason that is not the record's: keep it pending and try again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _ExemptAnswer(Exception):
    """The collector answered 403 ``exempt``: no retry can succeed, the device must apply its exemption."""


class _DailyCapReached(Exception):
    """The next body (or chunk) does not fit in what is left of today's cap."""


class _OutOfTime(Exception):
    """The deadline (of a stop flush or upload_pending) passed between two requests."""


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare enough to fall back on our own backoff


def backoff_delay(
    failures: int, retry_after: float | None, initial: float, maximum: float, jitter: float
) -> float:
    """Seconds to wait after ``failures`` failures in a row: exponential from ``initial``, at most
    ``maximum``, and at least what the collector asked for in Retry-After (itself capped at ``maximum``,
    so a confused server cannot park a device for a day). ``jitter`` in [0, 1] picks within the upper
    half of the step: a fleet's retries after an outage spread out instead of arriving at once."""
    ceiling = min(maximum, initial * 2.0 ** min(failures - 1, 32))
    delay = ceiling / 2 + jitter * ceiling / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum))
    return delay


class _UploadSessionStatus(msgspec.Struct):
    upload_id: str
    received: int


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = msgspec.json.decode(response.content).get("error")
    except (msgspec.DecodeError, AttributeError):
        return None
    return str(code) if code else None


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
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.page_records = page_records
        self.page_bytes = page_bytes
        self.resumable_bytes = resumable_bytes
        self.chunk_bytes = chunk_bytes
        self.bytes_sent = 0
        self.records_sent = 0
        self.records_rejected = 0
        self.exempt = False
        self.on_exempt = on_exempt
        self.last_error: str | None = None
        self.last_decision: UploadDecision | None = None
        self.counter = DailyUploadCounter(state_path or spool.directory / UPLOAD_STATE_FILE)
        self._backlog = _BacklogReader(spool.directory)
        self._base_url = _normalise_server_url(credentials.server_url)
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=request_timeout)
        self._auth_headers = {"Authorization": f"Bearer {credentials.token}", "User-Agent": USER_AGENT}
        self._headers = {**self._auth_headers, "Content-Type": RECORD_MEDIA_TYPE}
        self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # What the current decision lets us send, and the day a body was found not to fit in the cap.
        self._allowance: int | None = None
        self._full_day: str | None = None

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
            except _RetryLater as retry:
                self.last_error = retry.reason
                log.info("final upload stopped: %s", retry.reason)
            except _ExemptAnswer:
                self._exempted()
            except SpoolError as error:
                log.error("final upload stopped: %s", error)
        self.close()
        return self.spool.pending_count()

    def close(self) -> None:
        """Release the HTTP connections (if this uploader opened them) and save today's count."""
        if self._closed:
            return
        self._closed = True
        self.counter.save()
        self._backlog.close()
        if self._owns_client:
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
            except _ExemptAnswer:
                self._exempted()
                return  # nothing will ever be taken again: retrying would only knock on a closed door
            except _RetryLater as retry:
                failures += 1
                delay = self._backoff_delay(failures, retry.retry_after)
                self.last_error = retry.reason
                log.warning("upload paused, retrying in %.1f s: %s", delay, retry.reason)
                if self._stopping.wait(delay):
                    break
                continue  # retry at once after the pause, commit or not
            except Exception as error:  # a spool that will not decrypt, a bug: never let the thread die
                failures += 1
                delay = self._backoff_delay(failures, None)
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("upload failed unexpectedly, retrying in %.1f s", delay)
                if self._stopping.wait(delay):
                    break
                continue
            self.last_decision = hold
            # stop() sets _stopping before waking us: if our clear() above swallowed its wake-up,
            # this check still sees the stop.
            if not self._stopping.is_set():
                # A commit, a gate change or stop() wakes us; a hold that ends with time (burst age,
                # battery backlog age, the next day) also sets a timeout. No polling in between.
                self.spool.committed.wait(hold.recheck_after_s)

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

    def _take_allowance(self, size: int) -> None:
        """Count ``size`` bytes against today's cap before they go; _DailyCapReached if they do not fit."""
        if self._allowance is None:
            return
        # A body larger than a whole day's cap still goes, alone, first thing in a day: never stuck forever.
        if size > self._allowance and self.counter.sent_on(local_day(self.clock())) > 0:
            raise _DailyCapReached
        self._allowance -= size

    def _count_sent(self, size: int) -> None:
        self.bytes_sent += size
        self.counter.add(local_day(self.clock()), size)

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
        sent_before = self.records_sent

        def out_of_time() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        try:
            self.last_decision = self._drain(out_of_time, deadline, "final")
        except _RetryLater as retry:
            self.last_error = retry.reason
            raise UploadError(
                f"{retry.reason}; {self.spool.pending_count()} records remain in the spool"
            ) from None
        except _ExemptAnswer:
            self._exempted()
            raise DeviceExempt(
                f"{self.last_error}; the next policy refresh deletes the"
                f" {self.spool.pending_count()} records left in the spool"
            ) from None
        return self.records_sent - sent_before

    def _drain(
        self, should_stop: Callable[[], bool], deadline: float | None, phase: UploadPhase
    ) -> UploadDecision:
        """Send pending records, oldest first, while the decision allows; returns the one that stopped it."""
        while not should_stop():
            decision = self.last_decision = self.decide(phase)
            if not decision.send:
                return decision
            page = self.spool.pending(limit=self.page_records, max_bytes=self.page_bytes)
            if not page:
                return UploadDecision(False, 0, "nothing to send")
            if phase == "waiting":
                phase = "burst"  # once started, a burst goes on until the backlog is empty
            self._allowance = decision.max_bytes
            done: list[str] = []
            try:
                for item in page:
                    if should_stop():
                        break
                    self._send(item, deadline)
                    done.append(item.record_id)
            except _DailyCapReached:
                self._full_day = local_day(self.clock())
            except _OutOfTime:
                break
            finally:
                # One spool transaction per page, not per record; a crash before it only means re-sends,
                # which the collector answers with 200.
                if done:
                    self.spool.mark_uploaded(done)
                self.counter.save()
        return UploadDecision(False, 0, "stopping")

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.request_timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise _OutOfTime
        return min(self.request_timeout, left)

    def _send(self, item: SpooledRecord, deadline: float | None) -> None:
        """Send one record; returns once the collector has it or has refused it for good."""
        body = self._compressor.compress(item.payload)
        if len(body) > self.resumable_bytes:
            self._send_resumable(item, body, deadline)
        else:
            self._send_whole(item, body, deadline)

    def _request(
        self,
        method: str,
        path: str,
        deadline: float | None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        timeout = self._timeout(deadline)
        try:
            return self._client.request(
                method, f"{self._base_url}{path}", content=content, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as error:
            raise _RetryLater(
                f"cannot reach collector {self._base_url}: {type(error).__name__}: {error}"
            ) from None

    def _send_whole(self, item: SpooledRecord, body: bytes, deadline: float | None) -> None:
        """PUT one record in one request."""
        self._take_allowance(len(body))
        response = self._request(
            "PUT",
            f"/v1/records/{quote(item.record_id, safe='')}",
            deadline,
            content=body,
            headers=self._headers,
        )
        self._count_sent(len(body))
        if response.status_code in (200, 201):
            self.records_sent += 1
            return
        self._refused(item, response)

    def _refused(self, item: SpooledRecord, response: httpx.Response) -> None:
        """Handle a refusal: drop the record for good (and return) or raise _RetryLater."""
        status = response.status_code
        if status in REJECTED_STATUSES:
            self.records_rejected += 1
            log.error(
                "collector refused %s %s for good (%d: %s); dropping it from the upload queue",
                item.kind,
                item.record_id,
                status,
                _error_detail(response),
            )
            return
        if status == 403 and _error_code(response) == "exempt":
            raise _ExemptAnswer
        if status == 401:
            raise _RetryLater(
                f"collector refused the device token (401): re-enrol device {self.credentials.device_id}"
            )
        raise _RetryLater(
            f"collector answered {status} for {item.record_id}: {_error_detail(response)}",
            _retry_after_seconds(response),
        )

    def _send_resumable(self, item: SpooledRecord, body: bytes, deadline: float | None) -> None:
        """Send a large record in chunks through an upload session, from wherever the collector got to."""
        total = len(body)
        request = msgspec.json.encode(
            {"record_id": item.record_id, "size": total, "sha256": hashlib.sha256(body).hexdigest()}
        )
        json_headers = {**self._auth_headers, "Content-Type": "application/json"}
        for _attempt in range(_MAX_SESSION_RESTARTS):
            # The session id depends only on the device and the body: this finds a half-done upload
            # from before a restart or a broken link, and tells how much the collector already has.
            response = self._request("POST", "/v1/uploads", deadline, content=request, headers=json_headers)
            if response.status_code in (404, 405):  # a collector without resumable uploads
                self._send_whole(item, body, deadline)
                return
            if response.status_code not in (200, 201):
                self._refused(item, response)
                return
            try:
                session = msgspec.json.decode(response.content, type=_UploadSessionStatus)
            except msgspec.DecodeError as error:
                raise _RetryLater(f"collector gave an unreadable upload session: {error}") from None
            if self._send_chunks(item, body, session, deadline):
                return
        raise _RetryLater(f"upload session for {item.record_id} kept restarting; trying again later")

    def _send_chunks(
        self, item: SpooledRecord, body: bytes, session: _UploadSessionStatus, deadline: float | None
    ) -> bool:
        """PUT the chunks from ``session.received`` on; False if the session must be opened again."""
        total = len(body)
        offset = session.received
        path = f"/v1/uploads/{quote(session.upload_id, safe='')}"
        while True:
            if offset >= total:  # every byte is there (an earlier completion failed): complete it
                chunk, content_range = b"", f"bytes */{total}"
            else:
                chunk = body[offset : offset + self.chunk_bytes]
                content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{total}"
            self._take_allowance(len(chunk))
            headers = {
                **self._auth_headers,
                "Content-Type": "application/octet-stream",
                "Content-Range": content_range,
            }
            response = self._request("PUT", path, deadline, content=chunk, headers=headers)
            self._count_sent(len(chunk))
            status = response.status_code
            if status == 202:
                try:
                    offset = msgspec.json.decode(response.content, type=_UploadSessionStatus).received
                except msgspec.DecodeError as error:
                    raise _RetryLater(f"collector gave an unreadable upload status: {error}") from None
                continue
            if status in (200, 201):
                self.records_sent += 1
                return True
            # 416: our offset is not the collector's; 404: the session expired or completed meanwhile;
            # a corrupt assembly: it was discarded. Each time, opening the session again sorts it out.
            if status in (404, 416) or _error_code(response) == "upload_corrupted":
                log.info("upload of %s restarts its session (%d)", item.record_id, status)
                return False
            self._refused(item, response)
            return True


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
