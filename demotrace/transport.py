"""Device side of the upload: enrol with a collector, keep the credentials, and send spooled records.

The uploader is one background thread that sleeps on ``Spool.committed`` until there is work, sends each
pending record (zstd-compressed MessagePack, one idempotent PUT per record) and marks it uploaded once
the collector has it. A dead or failing collector loses nothing: records stay pending and the thread
backs off exponentially, with jitter, on an Event that stop() sets, so stopping is immediate.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import msgspec
import zstandard

from demotrace import __version__
from demotrace.spool import Spool, SpooledRecord, SpoolError

RECORD_MEDIA_TYPE = "application/x-demotrace-record"
ENROLLMENT_SECRET_HEADER = "X-Enrollment-Secret"
CREDENTIALS_FILE = "device.json"
USER_AGENT = f"demotrace/{__version__}"

# Answers that condemn the record itself: sending it again cannot succeed. Anything else (5xx, 401,
# 404 from a misconfigured proxy...) is about the server or the link, so the record waits and is retried.
REJECTED_STATUSES = frozenset({400, 409, 413, 422})

log = logging.getLogger(__name__)


class TransportError(Exception):
    """Enrolment, credentials or upload failed; the message says why and what to do."""


class EnrollmentError(TransportError):
    pass


class CredentialsError(TransportError):
    pass


class UploadError(TransportError):
    """The collector could not be reached or refused to take records now; they remain in the spool."""


class DeviceCredentials(msgspec.Struct, frozen=True):
    server_url: str
    device_id: str
    token: str


class _EnrollResponse(msgspec.Struct):
    device_id: str
    token: str


def default_credentials_path() -> Path:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "demotrace" / CREDENTIALS_FILE


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


class _RetryLater(Exception):
    """Sending failed for a reason that is not the record's: keep it pending and try again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare enough to fall back on our own backoff


class Uploader:
    """Sends a spool's pending records to the collector on one background thread.

    ``bytes_sent`` counts request bodies (compressed) that reached the collector, retries included;
    ``records_sent`` the records it accepted; ``records_rejected`` the records it refused for good
    (400/409/413/422), which are logged and then marked uploaded so they cannot block the queue: they
    stay in the spool file, and are no longer pending.
    """

    def __init__(
        self,
        spool: Spool,
        credentials: DeviceCredentials,
        *,
        client: httpx.Client | None = None,
        request_timeout: float = 30.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        page_records: int = 64,
        page_bytes: int = 16 * 1024 * 1024,
        compression_level: int = 3,
    ) -> None:
        self.spool = spool
        self.credentials = credentials
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.page_records = page_records
        self.page_bytes = page_bytes
        self.bytes_sent = 0
        self.records_sent = 0
        self.records_rejected = 0
        self.last_error: str | None = None
        self._base_url = _normalise_server_url(credentials.server_url)
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=request_timeout)
        self._headers = {
            "Authorization": f"Bearer {credentials.token}",
            "Content-Type": RECORD_MEDIA_TYPE,
            "User-Agent": USER_AGENT,
        }
        self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- background thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread. An Uploader runs once: after stop(), make a new one."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("an Uploader can be started once")
        self._thread = threading.Thread(target=self._run, name="demotrace-uploader", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True, timeout: float = 10.0) -> int:
        """Stop the thread; with ``flush``, try to send what is pending until ``timeout`` runs out.

        Returns how many records are still pending (they go on the next start). Safe to call twice.
        """
        if self._closed:
            return self.spool.pending_count()
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self.spool.committed.set()  # the thread sleeps on it: wake it so it sees the stop
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                # Stuck in a request to a hung collector: leave it (a daemon) rather than send concurrently.
                log.warning("uploader did not stop within %.1f s; not flushing", timeout)
                return self.spool.pending_count()
            self._thread = None
        if flush:
            try:
                self._drain(lambda: time.monotonic() >= deadline, deadline)
            except _RetryLater as retry:
                self.last_error = retry.reason
                log.info("final upload stopped: %s", retry.reason)
            except SpoolError as error:
                log.error("final upload stopped: %s", error)
        self.close()
        return self.spool.pending_count()

    def close(self) -> None:
        """Release the HTTP connections (if this uploader opened them)."""
        self._closed = True
        if self._owns_client:
            self._client.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            # Clear before reading: a commit that lands while we drain sets it again, so no work is missed.
            self.spool.committed.clear()
            try:
                self._drain(self._stopping.is_set, None)
                failures = 0
                self.last_error = None
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
            # stop() sets _stopping before waking us: if our clear() above swallowed its wake-up,
            # this check still sees the stop.
            if not self._stopping.is_set():
                self.spool.committed.wait()

    def _backoff_delay(self, failures: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 32))
        # Jitter spreads a fleet's retries after an outage instead of having every device return at once.
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    # --- sending -----------------------------------------------------------------------------------

    def upload_pending(self, timeout: float | None = None) -> int:
        """Send everything pending now, on the calling thread; returns how many records were accepted.

        Raises UploadError if the collector cannot be reached or refuses for now (what was sent stays
        sent). Not to be called while the background thread runs.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("upload_pending() needs an uploader that is neither running nor stopped")
        deadline = None if timeout is None else time.monotonic() + timeout
        sent_before = self.records_sent

        def out_of_time() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        try:
            self._drain(out_of_time, deadline)
        except _RetryLater as retry:
            self.last_error = retry.reason
            raise UploadError(
                f"{retry.reason}; {self.spool.pending_count()} records remain in the spool"
            ) from None
        return self.records_sent - sent_before

    def _drain(self, should_stop: Callable[[], bool], deadline: float | None) -> None:
        """Send pending records, oldest first, until none are left or ``should_stop()``."""
        while not should_stop():
            page = self.spool.pending(limit=self.page_records, max_bytes=self.page_bytes)
            if not page:
                return
            done: list[str] = []
            try:
                for item in page:
                    if should_stop():
                        return
                    timeout = self.request_timeout
                    if deadline is not None:
                        timeout = min(timeout, deadline - time.monotonic())
                        if timeout <= 0:
                            return
                    self._send(item, timeout)
                    done.append(item.record_id)
            finally:
                # One spool transaction per page, not per record; a crash before it only means re-sends,
                # which the collector answers with 200.
                if done:
                    self.spool.mark_uploaded(done)

    def _send(self, item: SpooledRecord, timeout: float) -> None:
        """PUT one record; returns once the collector has it or has refused it for good."""
        body = self._compressor.compress(item.payload)
        url = f"{self._base_url}/v1/records/{quote(item.record_id, safe='')}"
        try:
            response = self._client.put(url, content=body, headers=self._headers, timeout=timeout)
        except httpx.HTTPError as error:
            raise _RetryLater(
                f"cannot reach collector {self._base_url}: {type(error).__name__}: {error}"
            ) from None
        self.bytes_sent += len(body)
        status = response.status_code
        if status in (200, 201):
            self.records_sent += 1
            return
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
        if status == 401:
            raise _RetryLater(
                f"collector refused the device token (401): re-enrol device {self.credentials.device_id}"
            )
        raise _RetryLater(
            f"collector answered {status} for {item.record_id}: {_error_detail(response)}",
            _retry_after_seconds(response),
        )


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
