"""How one spooled record reaches the collector: one idempotent PUT, or a resumable session for a large one.

Records whose compressed body passes ``resumable_bytes`` go through a resumable upload session
(``POST /v1/uploads``, then ``PUT`` chunks with ``Content-Range``): a broken link, a stop or the daily
cap only pauses them, and the next attempt goes on from the collector's offset.

A busy collector (503/429 with ``Retry-After``) raises ``RetryLater`` with the wait it asks for; a 403
``exempt`` raises ``ExemptAnswer``: the uploader decides what either means.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import httpx
import msgspec
import zstandard

from demotrace.device.client import CollectorClient, CollectorUnreachable, refusal_code, refusal_detail
from demotrace.device.spool import SpooledRecord
from demotrace.device.upload_progress import UploadProgress
from demotrace.device.upload_rules import DailyUploadCounter, KiB, MiB, local_day
from demotrace.protocol import RECORD_MEDIA_TYPE, RECORD_PATH, UPLOAD_PATH, UPLOADS_PATH, path_for

# Answers that condemn the record itself: sending it again cannot succeed. Anything else (5xx, 401,
# 404 from a misconfigured proxy...) is about the server or the link, so the record waits and is retried.
REJECTED_STATUSES = frozenset({400, 409, 413, 422})

RESUMABLE_THRESHOLD_BYTES = 1 * MiB
UPLOAD_CHUNK_BYTES = 256 * KiB
# How often one record may lose its session (expired, offset moved, body corrupt) before we back off.
_MAX_SESSION_RESTARTS = 3

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Sending failed for a reason that is not the record's: keep it pending and try again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ExemptAnswer(Exception):
    """The collector answered 403 ``exempt``: no retry can succeed, the device must apply its exemption."""


class DailyCapReached(Exception):
    """The next body (or chunk) does not fit in what is left of today's cap."""


class OutOfTime(Exception):
    """The deadline (of a stop flush or upload_pending) passed between two requests."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare enough to fall back on our own backoff


class _UploadSessionStatus(msgspec.Struct):
    upload_id: str
    received: int


class RecordSender:
    """Sends spooled records to the collector one at a time, counting what goes against today's cap.

    ``bytes_sent`` counts request bodies (compressed) that reached the collector, retries included;
    ``records_sent`` the records it accepted; ``records_rejected`` the records it refused for good
    (400/409/413/422), which are logged and count as done so they cannot block the queue.
    ``allowance`` is what the current upload decision lets go (None: no cap).
    """

    def __init__(
        self,
        client: CollectorClient,
        device_id: str,
        counter: DailyUploadCounter,
        clock: Callable[[], float],
        *,
        request_timeout: float,
        resumable_bytes: int,
        chunk_bytes: int,
        compression_level: int,
        progress: UploadProgress | None = None,
    ) -> None:
        self.client = client
        self.device_id = device_id
        self.counter = counter
        self.clock = clock
        self.request_timeout = request_timeout
        self.resumable_bytes = resumable_bytes
        self.chunk_bytes = chunk_bytes
        self.bytes_sent = 0
        self.records_sent = 0
        self.records_rejected = 0
        self.allowance: int | None = None
        self.progress = progress or UploadProgress()
        self._compressor = zstandard.ZstdCompressor(level=compression_level)

    def send(self, item: SpooledRecord, deadline: float | None) -> None:
        """Send one record; returns once the collector has it or has refused it for good."""
        body = self._compressor.compress(item.payload)
        self.progress.record_started(len(body))
        if len(body) > self.resumable_bytes:
            self._send_resumable(item, body, deadline)
        else:
            self._send_whole(item, body, deadline)
        self.progress.record_done()  # accepted, or refused for good: either way it leaves the queue

    def _take_allowance(self, size: int) -> None:
        """Count ``size`` bytes against today's cap before they go; DailyCapReached if they do not fit."""
        if self.allowance is None:
            return
        # A body larger than a whole day's cap still goes, alone, first thing in a day: never stuck forever.
        if size > self.allowance and self.counter.sent_on(local_day(self.clock())) > 0:
            raise DailyCapReached
        self.allowance -= size

    def _count_sent(self, size: int) -> None:
        self.bytes_sent += size
        self.progress.bytes_went(size)
        self.counter.add(local_day(self.clock()), size)

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.request_timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime
        return min(self.request_timeout, left)

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
            return self.client.request(method, path, content=content, headers=headers, timeout=timeout)
        except CollectorUnreachable as error:
            raise RetryLater(str(error)) from None

    def _send_whole(self, item: SpooledRecord, body: bytes, deadline: float | None) -> None:
        """PUT one record in one request."""
        self._take_allowance(len(body))
        response = self._request(
            "PUT",
            path_for(RECORD_PATH, record_id=item.record_id),
            deadline,
            content=body,
            headers={"Content-Type": RECORD_MEDIA_TYPE},
        )
        self._count_sent(len(body))
        if response.status_code in (200, 201):
            self.records_sent += 1
            return
        self._refused(item, response)

    def _refused(self, item: SpooledRecord, response: httpx.Response) -> None:
        """Handle a refusal: drop the record for good (and return) or raise RetryLater."""
        status = response.status_code
        if status in REJECTED_STATUSES:
            self.records_rejected += 1
            log.error(
                "collector refused %s %s for good (%d: %s); dropping it from the upload queue",
                item.kind,
                item.record_id,
                status,
                refusal_detail(response),
            )
            return
        if status == 403 and refusal_code(response) == "exempt":
            raise ExemptAnswer
        if status == 401:
            raise RetryLater(f"collector refused the device token (401): re-enrol device {self.device_id}")
        raise RetryLater(
            f"collector answered {status} for {item.record_id}: {refusal_detail(response)}",
            retry_after_seconds(response),
        )

    def _send_resumable(self, item: SpooledRecord, body: bytes, deadline: float | None) -> None:
        """Send a large record in chunks through an upload session, from wherever the collector got to."""
        total = len(body)
        request = msgspec.json.encode(
            {"record_id": item.record_id, "size": total, "sha256": hashlib.sha256(body).hexdigest()}
        )
        json_headers = {"Content-Type": "application/json"}
        for _attempt in range(_MAX_SESSION_RESTARTS):
            # The session id depends only on the device and the body: this finds a half-done upload
            # from before a restart or a broken link, and tells how much the collector already has.
            response = self._request("POST", UPLOADS_PATH, deadline, content=request, headers=json_headers)
            if response.status_code in (404, 405):  # a collector without resumable uploads
                self._send_whole(item, body, deadline)
                return
            if response.status_code not in (200, 201):
                self._refused(item, response)
                return
            try:
                session = msgspec.json.decode(response.content, type=_UploadSessionStatus)
            except msgspec.DecodeError as error:
                raise RetryLater(f"collector gave an unreadable upload session: {error}") from None
            if self._send_chunks(item, body, session, deadline):
                return
        raise RetryLater(f"upload session for {item.record_id} kept restarting; trying again later")

    def _send_chunks(
        self, item: SpooledRecord, body: bytes, session: _UploadSessionStatus, deadline: float | None
    ) -> bool:
        """PUT the chunks from ``session.received`` on; False if the session must be opened again."""
        total = len(body)
        offset = session.received
        self.progress.record_started(total, already_received=offset)
        path = path_for(UPLOAD_PATH, upload_id=session.upload_id)
        while True:
            if offset >= total:  # every byte is there (an earlier completion failed): complete it
                chunk, content_range = b"", f"bytes */{total}"
            else:
                chunk = body[offset : offset + self.chunk_bytes]
                content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{total}"
            self._take_allowance(len(chunk))
            headers = {"Content-Type": "application/octet-stream", "Content-Range": content_range}
            response = self._request("PUT", path, deadline, content=chunk, headers=headers)
            self._count_sent(len(chunk))
            status = response.status_code
            if status == 202:
                try:
                    offset = msgspec.json.decode(response.content, type=_UploadSessionStatus).received
                except msgspec.DecodeError as error:
                    raise RetryLater(f"collector gave an unreadable upload status: {error}") from None
                continue
            if status in (200, 201):
                self.records_sent += 1
                return True
            # 416: our offset is not the collector's; 404: the session expired or completed meanwhile;
            # a corrupt assembly: it was discarded. Each time, opening the session again sorts it out.
            if status in (404, 416) or refusal_code(response) == "upload_corrupted":
                log.info("upload of %s restarts its session (%d)", item.record_id, status)
                return False
            self._refused(item, response)
            return True
