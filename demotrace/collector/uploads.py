"""Resumable uploads: records too large for one request arrive in chunks that survive broken links and
restarts, then complete through the ingest service like any other record.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from demotrace.collector.errors import (
    BadRequest,
    CollectorError,
    Exempt,
    OffsetMismatch,
    PayloadTooLarge,
    TooManyUploads,
    UploadCorrupted,
    UploadNotFound,
)
from demotrace.collector.ingest import RECORD_ID_PATTERN, STREAM_CHUNK_BYTES, IngestService, StoreOutcome

UPLOADS_FOLDER = "uploads"
MAX_UPLOAD_REQUEST_BYTES = 4 * 1024
MAX_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
MAX_OPEN_UPLOADS_PER_DEVICE = 16
# A session nobody touched for this long is abandoned (the device was wiped, or gave up): its chunks go.
UPLOAD_EXPIRY_SECONDS = 7 * 24 * 3600
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+)")


class UploadRequest(msgspec.Struct, forbid_unknown_fields=True):
    record_id: str
    size: int
    sha256: str


class UploadSession(msgspec.Struct):
    upload_id: str
    device_id: str
    record_id: str
    size: int
    sha256: str
    created: float


@dataclass(frozen=True)
class UploadStatus:
    upload_id: str
    record_id: str
    size: int
    received: int
    created: bool = False  # True only from the POST that opened the session


@dataclass(frozen=True)
class ContentRange:
    start: int | None  # None: "bytes */total", no data (asks to complete an upload already received)
    end: int | None  # inclusive, as in HTTP
    total: int

    @property
    def length(self) -> int:
        return 0 if self.start is None or self.end is None else self.end - self.start + 1


def parse_upload_request(body: bytes) -> UploadRequest:
    """The ``{"record_id", "size", "sha256"}`` of a POST /v1/uploads body; raises BadRequest."""
    if len(body) > MAX_UPLOAD_REQUEST_BYTES:
        raise PayloadTooLarge(f"upload request larger than {MAX_UPLOAD_REQUEST_BYTES} bytes")
    try:
        request = msgspec.json.decode(body, type=UploadRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise BadRequest(
            f'expected JSON {{"record_id": ..., "size": ..., "sha256": ...}}: {error}'
        ) from error
    if not RECORD_ID_PATTERN.fullmatch(request.record_id):
        raise BadRequest("record id must be 1 to 128 of A-Z a-z 0-9 _ - . and not start with '.'")
    if request.size <= 0:
        raise BadRequest("size must be a positive number of bytes")
    if not _SHA256_HEX.fullmatch(request.sha256):
        raise BadRequest("sha256 must be 64 lowercase hex digits")
    return request


def parse_content_range(header: str | None) -> ContentRange:
    """``bytes START-END/TOTAL`` (or ``bytes */TOTAL`` to complete) as numbers; raises BadRequest."""
    match = _CONTENT_RANGE.fullmatch((header or "").strip())
    if match is None:
        raise BadRequest("Content-Range must be 'bytes START-END/TOTAL' or 'bytes */TOTAL'")
    start, end, total = match.groups()
    if start is None or end is None:
        return ContentRange(start=None, end=None, total=int(total))
    content_range = ContentRange(start=int(start), end=int(end), total=int(total))
    if content_range.length <= 0 or int(end) >= content_range.total:
        raise BadRequest(f"Content-Range {header!r} is not inside the upload")
    return content_range


def upload_id_for(device_id: str, request: UploadRequest) -> str:
    """The same record from the same device always resumes the same session, even after a restart."""
    key = "\0".join((device_id, request.record_id, str(request.size), request.sha256))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class ResumableUploads:
    """Upload sessions for records too large for one request: chunks append to ``uploads/<id>.part``.

    The offset is the size of the part file, so it is right after any crash; each chunk is fsynced
    before it is acknowledged. The last byte completes the record through ``IngestService.store_record``
    (same limits, same idempotency), then the session's files go. An flock on the part file serialises
    concurrent chunks of one session, across worker processes too.
    """

    def __init__(
        self,
        ingest: IngestService,
        folder: Path,
        *,
        max_open_per_device: int = MAX_OPEN_UPLOADS_PER_DEVICE,
        expiry_seconds: float = UPLOAD_EXPIRY_SECONDS,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ingest = ingest
        self.folder = folder
        self.max_open_per_device = max_open_per_device
        self.expiry_seconds = expiry_seconds

    def _meta_path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.json"

    def _part_path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.part"

    def _received(self, upload_id: str) -> int:
        try:
            return self._part_path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    def _load(self, device_id: str, upload_id: str) -> UploadSession:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise UploadNotFound(f"no upload {upload_id!r}")
        try:
            session = msgspec.json.decode(self._meta_path(upload_id).read_bytes(), type=UploadSession)
        except (FileNotFoundError, msgspec.DecodeError) as error:
            raise UploadNotFound(f"no upload {upload_id}: it expired, completed or never began") from error
        if session.device_id != device_id:
            raise UploadNotFound(f"no upload {upload_id}")  # another device's: do not even confirm it
        return session

    def _status(self, session: UploadSession, created: bool = False) -> UploadStatus:
        return UploadStatus(
            upload_id=session.upload_id,
            record_id=session.record_id,
            size=session.size,
            received=self._received(session.upload_id),
            created=created,
        )

    def _discard(self, upload_id: str) -> None:
        self._part_path(upload_id).unlink(missing_ok=True)
        self._meta_path(upload_id).unlink(missing_ok=True)

    def _sessions(self) -> list[UploadSession]:
        sessions = []
        for path in self.folder.glob("*.json"):
            try:
                sessions.append(msgspec.json.decode(path.read_bytes(), type=UploadSession))
            except (OSError, msgspec.DecodeError):
                continue
        return sessions

    def discard_device(self, device_id: str) -> int:
        """Remove every unfinished upload of a device (it became exempt); returns how many sessions."""
        removed = 0
        for session in self._sessions():
            if session.device_id == device_id:
                self._discard(session.upload_id)
                removed += 1
        for part in self.folder.glob("*.part"):
            # Chunks without a session (a chunk that raced a completion) are nobody's any more; whose
            # they were is not recorded, so they go now rather than linger until they expire.
            if not self._meta_path(part.stem).exists():
                part.unlink(missing_ok=True)
        return removed

    def refuse_if_exempt(self, device_id: str) -> None:
        """Raise Exempt if the device is exempt, after discarding whatever it had half uploaded."""
        guard = self.ingest.upload_guard
        if guard is None:
            return
        try:
            guard.check_upload_allowed(device_id)
        except Exempt:
            self.discard_device(device_id)
            raise

    def expire(self, now: float | None = None) -> int:
        """Remove sessions untouched for ``expiry_seconds``; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for session in self._sessions():
            touched = session.created
            part = self._part_path(session.upload_id)
            if part.exists():
                touched = max(touched, part.stat().st_mtime)
            if now - touched > self.expiry_seconds:
                self._discard(session.upload_id)
                removed += 1
        for part in self.folder.glob("*.part"):
            # A chunk racing a completion can leave a part file without its session: drop it in time.
            orphan = not self._meta_path(part.stem).exists()
            if orphan and now - part.stat().st_mtime > self.expiry_seconds:
                part.unlink(missing_ok=True)
        return removed

    def begin(self, device_id: str, request: UploadRequest) -> UploadStatus:
        """Open a session, or find the one already open for this record: its offset says where to go on."""
        self.refuse_if_exempt(device_id)
        if request.size > self.ingest.max_body_bytes:
            raise PayloadTooLarge(
                f"record body is {request.size} bytes, more than {self.ingest.max_body_bytes}"
            )
        upload_id = upload_id_for(device_id, request)
        try:
            return self._status(self._load(device_id, upload_id))
        except UploadNotFound:
            pass
        self.expire()
        open_now = sum(1 for session in self._sessions() if session.device_id == device_id)
        if open_now >= self.max_open_per_device:
            raise TooManyUploads(f"device has {open_now} unfinished uploads; finish one first")
        session = UploadSession(
            upload_id=upload_id,
            device_id=device_id,
            record_id=request.record_id,
            size=request.size,
            sha256=request.sha256,
            created=time.time(),
        )
        fd, temp_name = tempfile.mkstemp(dir=self.folder, prefix=".session-", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.encode(session))
        os.replace(temp_name, self._meta_path(upload_id))
        return self._status(session, created=True)

    def status(self, device_id: str, upload_id: str) -> UploadStatus:
        self.refuse_if_exempt(device_id)
        return self._status(self._load(device_id, upload_id))

    def append(
        self, device_id: str, upload_id: str, content_range: ContentRange, chunk: bytes
    ) -> UploadStatus | StoreOutcome:
        """Add one chunk; the chunk that completes the body stores the record and returns its outcome."""
        self.refuse_if_exempt(device_id)
        session = self._load(device_id, upload_id)
        if content_range.total != session.size:
            raise BadRequest(f"Content-Range total {content_range.total} is not the upload's {session.size}")
        if len(chunk) != content_range.length:
            raise BadRequest(f"body is {len(chunk)} bytes, Content-Range says {content_range.length}")
        part_path = self._part_path(upload_id)
        fd = os.open(part_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            received = os.fstat(fd).st_size
            if content_range.start is not None:
                if content_range.start != received:
                    raise OffsetMismatch(
                        f"upload {upload_id} has {received} bytes; the chunk starts at {content_range.start}"
                    )
                _write_all(fd, chunk)
                os.fsync(fd)
                received += len(chunk)
                # An approval may have landed while the chunk was on its way: it must not stay behind.
                self.refuse_if_exempt(device_id)
            if received < session.size:
                return self._status(session)
            os.lseek(fd, 0, os.SEEK_SET)
            body = b"".join(iter(lambda: os.read(fd, STREAM_CHUNK_BYTES), b""))
            return self._complete(session, body)
        finally:
            os.close(fd)  # releases the lock

    def _complete(self, session: UploadSession, body: bytes) -> StoreOutcome:
        if hashlib.sha256(body).hexdigest() != session.sha256:
            self._discard(session.upload_id)
            raise UploadCorrupted(f"upload {session.upload_id} does not match its SHA-256: send it again")
        try:
            outcome = self.ingest.store_record(session.device_id, session.record_id, body)
        except CollectorError as error:
            if error.status < 500:  # the record itself is refused: keeping its chunks helps nobody
                self._discard(session.upload_id)
            raise
        self._discard(session.upload_id)
        return outcome


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
