"""The collector's logic, free of any web framework: enrol devices, authenticate them, ingest records.

Every failure a client can cause raises a CollectorError that carries its HTTP status, so the web layer
only translates; nothing a client sends can make this module raise anything else.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import zstandard

from demotrace.collector.store import BlobStore, MetadataStore, StoredRecord
from demotrace.collector.store.metadata import (
    EXEMPTION_APPROVED,
    EXEMPTION_DENIED,
    EXEMPTION_REQUESTED,
    AuditRecord,
    ExemptionRequest,
    ExemptionStore,
)
from demotrace.model import Batch, Frame, Record, decode_record, encode_record
from demotrace.policy import DEFAULT_FLEET_POLICY, CapturePolicy, PolicyError, parse_policy

RECORD_MEDIA_TYPE = "application/x-demotrace-record"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_ENROLL_BODY_BYTES = 64 * 1024
# zstd's decoder allocates its window up front: cap it so a forged frame header cannot ask for 2 GiB.
# 32 MiB covers every level up to 21 (window log 25) with room to spare.
MAX_ZSTD_WINDOW_BYTES = 1 << 25
_DECOMPRESS_CHUNK = 1 << 20
_BLOB_COMPRESSION_LEVEL = 3

# Record ids become part of blob keys: keep them to characters that are safe in any file or object name.
RECORD_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_SESSION_ID_CHARS = 256
MAX_DEVICE_NAME_CHARS = 256
MAX_TOKEN_CHARS = 512
MAX_SEQ = 2**63 - 1


class CollectorError(Exception):
    """A request the collector refuses; ``status`` is the HTTP status, ``code`` a stable short name."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CollectorError):
    status = 400
    code = "bad_request"


class Unauthorized(CollectorError):
    status = 401
    code = "unauthorized"


class Conflict(CollectorError):
    status = 409
    code = "conflict"


class PayloadTooLarge(CollectorError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(CollectorError):
    status = 415
    code = "unsupported_media_type"


class Exempt(CollectorError):
    """The device is exempt from recording: the collector takes nothing from it."""

    status = 403
    code = "exempt"


class Busy(CollectorError):
    """Every ingest slot is taken: the client should come back after ``retry_after`` seconds."""

    status = 503
    code = "busy"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Each upload being stored may hold its body (up to max_body_bytes) and its decompressed record (up to
# max_record_bytes) in memory: 16 at the default limits is at most about 1.5 GiB, and keeps a PostgreSQL
# backend busy without queueing threads behind SQLite's single writer for long.
DEFAULT_MAX_CONCURRENT_INGESTS = 16
BUSY_RETRY_AFTER_SECONDS = 5


class IngestSlots:
    """At most ``limit`` upload bodies read and stored at once; the next one is told to come back later.

    Refusing (Busy) rather than queueing keeps the collector's memory bounded under a burst of large
    uploads, and the devices keep their records until a retry is taken.
    """

    def __init__(
        self, limit: int = DEFAULT_MAX_CONCURRENT_INGESTS, retry_after: int = BUSY_RETRY_AFTER_SECONDS
    ):
        if limit < 1:
            raise ValueError("the limit of concurrent ingests must be at least 1")
        self.limit = limit
        self.retry_after = retry_after
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self) -> None:
        """Take a slot, or raise Busy at once if all are taken (never waits)."""
        with self._lock:
            if self._in_use >= self.limit:
                raise Busy(
                    f"the collector is storing {self.limit} uploads already: retry in {self.retry_after} s",
                    self.retry_after,
                )
            self._in_use += 1

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1


class EnrollRequest(msgspec.Struct):
    device_name: str


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    token: str  # shown once, to the device; only its SHA-256 is stored


@dataclass(frozen=True)
class StoreOutcome:
    record_id: str
    device_id: str
    created: bool  # False: the same record was stored before (a re-send)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def record_id_of(record: Record) -> str:
    return record.batch_id if isinstance(record, Batch) else record.frame_id


def parse_enroll_request(body: bytes) -> str:
    """The device name from an enrolment body, stripped; raises BadRequest."""
    if len(body) > MAX_ENROLL_BODY_BYTES:
        raise PayloadTooLarge(f"enrolment body larger than {MAX_ENROLL_BODY_BYTES} bytes")
    try:
        request = msgspec.json.decode(body, type=EnrollRequest)
    except msgspec.DecodeError as error:
        raise BadRequest(f'expected JSON {{"device_name": "..."}}: {error}') from error
    name = request.device_name.strip()
    if not name or len(name) > MAX_DEVICE_NAME_CHARS or not name.isprintable():
        raise BadRequest(f"device_name must have 1 to {MAX_DEVICE_NAME_CHARS} printable characters")
    return name


def decompress_bounded(body: bytes, max_output_bytes: int) -> bytes:
    """Decompress zstd data, refusing (PayloadTooLarge) as soon as the output passes ``max_output_bytes``.

    Streams in 1 MiB chunks and ignores the size a frame header claims, so a small body that expands to
    gigabytes (a zstd bomb) costs at most ``max_output_bytes`` of memory, never more.
    """
    if not body:
        raise BadRequest("empty body: expected a zstd-compressed MessagePack record")
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW_BYTES)
    chunks: list[bytes] = []
    total = 0
    try:
        # A size the header declares is only a hint, but a too-large one lets us refuse without work.
        declared = zstandard.frame_content_size(body)
        if declared > max_output_bytes:
            raise PayloadTooLarge(f"record decompresses to {declared} bytes, more than {max_output_bytes}")
        with decompressor.stream_reader(body, read_across_frames=True) as reader:
            while chunk := reader.read(_DECOMPRESS_CHUNK):
                total += len(chunk)
                if total > max_output_bytes:
                    raise PayloadTooLarge(f"record decompresses to more than {max_output_bytes} bytes")
                chunks.append(chunk)
    except zstandard.ZstdError as error:
        raise BadRequest(f"body is not valid zstd data: {error}") from error
    return b"".join(chunks)


def _times_of(record: Record) -> tuple[float | None, float | None]:
    if isinstance(record, Frame):
        return record.t, record.wall
    if record.events:
        first = min(record.events, key=lambda event: event.t)
        return first.t, first.wall
    if record.header is not None:
        return record.header.t, record.header.wall
    return None, None


def _owned_by(record: Record, device_id: str) -> Record:
    """The record as sent by ``device_id``: the client's own claim is never trusted."""
    if isinstance(record, Frame):
        return msgspec.structs.replace(record, device_id=device_id)
    header = record.header
    if header is not None:
        header = msgspec.structs.replace(header, device_id=device_id)
    return msgspec.structs.replace(record, device_id=device_id, header=header)


def _check_fits_in_database(record: Record) -> None:
    # Values every SQL backend can hold: PostgreSQL refuses NUL in text and integers past 64 bits.
    if len(record.session_id) > MAX_SESSION_ID_CHARS or "\0" in record.session_id:
        raise BadRequest(f"session_id must have at most {MAX_SESSION_ID_CHARS} characters and no NUL")
    if isinstance(record, Batch) and not 0 <= record.seq <= MAX_SEQ:
        raise BadRequest(f"batch seq must be between 0 and {MAX_SEQ}")


class CollectorService:
    # Set by create_app: refuses records from exempt devices (see ExemptionService).
    upload_guard: ExemptionService | None = None

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        *,
        enrollment_secret: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.enrollment_secret = enrollment_secret or None
        self.max_body_bytes = max_body_bytes
        self.max_record_bytes = max_record_bytes

    def enroll(self, device_name: str, presented_secret: str | None = None) -> Enrollment:
        if self.enrollment_secret is not None and not (
            presented_secret is not None
            and hmac.compare_digest(presented_secret.encode(), self.enrollment_secret.encode())
        ):
            raise Unauthorized("enrolment secret missing or wrong (header X-Enrollment-Secret)")
        device_id = uuid.uuid4().hex
        token = secrets.token_urlsafe(32)
        self.metadata.add_device(device_id, device_name, token_digest(token), time.time())
        return Enrollment(device_id=device_id, token=token)

    def authenticate(self, authorization: str | None) -> str:
        """The device id behind an ``Authorization: Bearer <token>`` header; raises Unauthorized."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token (header Authorization: Bearer <token>)")
        device_id = None
        if len(token) <= MAX_TOKEN_CHARS:
            device_id = self.metadata.device_for_token(token_digest(token))
        if device_id is None:
            raise Unauthorized("unknown or revoked device token")
        return device_id

    def store_record(self, device_id: str, record_id: str, body: bytes) -> StoreOutcome:
        """Ingest one uploaded record (zstd-compressed MessagePack) for an authenticated device.

        Idempotent: the same record again answers ``created=False`` and stores nothing new; a different
        record under a stored id (or a stored id from another device) is a Conflict.
        """
        if self.upload_guard is not None:
            self.upload_guard.check_upload_allowed(device_id)
        if not RECORD_ID_PATTERN.fullmatch(record_id):
            raise BadRequest("record id must be 1 to 128 of A-Z a-z 0-9 _ - . and not start with '.'")
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"body larger than {self.max_body_bytes} bytes")
        plain = decompress_bounded(body, self.max_record_bytes)
        try:
            record = decode_record(plain)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise BadRequest(f"body is not a demotrace record: {error}") from error
        if record_id_of(record) != record_id:
            raise BadRequest(f"record id in the body ({record_id_of(record)!r}) differs from the URL's")
        _check_fits_in_database(record)

        stored = encode_record(_owned_by(record, device_id))
        digest = hashlib.sha256(stored).hexdigest()
        existing = self.metadata.get_record(record_id)
        if existing is not None:
            return self._resent(existing, device_id, digest)

        kind = "batch" if isinstance(record, Batch) else "frame"
        # The digest in the key: two different bodies under one id never write the same blob.
        blob_key = f"{kind}/{device_id}/{record_id}.{digest[:16]}.msgpack.zst"
        blob = zstandard.ZstdCompressor(level=_BLOB_COMPRESSION_LEVEL).compress(stored)
        # Blob first, row second: a crash in between leaves an orphan blob, never a row without data.
        self.blobs.put(blob_key, blob)
        t, wall = _times_of(record)
        row = StoredRecord(
            record_id=record_id,
            kind=kind,
            device_id=device_id,
            session_id=record.session_id,
            seq=record.seq if isinstance(record, Batch) else None,
            t=t,
            wall=wall,
            size=len(stored),
            blob_key=blob_key,
            blob_size=len(blob),
            sha256=digest,
            received_at=time.time(),
        )
        if self.metadata.add_record(row):
            if self.upload_guard is not None:
                # The device may have become exempt while this record was on its way in.
                self.upload_guard.discard_if_exempt(device_id, record_id)
            return StoreOutcome(record_id=record_id, device_id=device_id, created=True)
        # Lost a race with a concurrent upload of the same id.
        existing = self.metadata.get_record(record_id)
        if existing is None:  # pragma: no cover - rows are never deleted while the collector runs
            raise CollectorError(f"record {record_id} vanished while being stored")
        if existing.blob_key != blob_key:
            self.blobs.delete(blob_key)
        return self._resent(existing, device_id, digest)

    @staticmethod
    def _resent(existing: StoredRecord, device_id: str, digest: str) -> StoreOutcome:
        if existing.device_id != device_id:
            raise Conflict(f"record id {existing.record_id} is already used by another device")
        if existing.sha256 != digest:
            raise Conflict(f"a different record with id {existing.record_id} is already stored")
        return StoreOutcome(record_id=existing.record_id, device_id=device_id, created=False)


# --- resumable uploads of large records -----------------------------------------------------------

UPLOADS_FOLDER = "uploads"
MAX_UPLOAD_REQUEST_BYTES = 4 * 1024
MAX_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
MAX_OPEN_UPLOADS_PER_DEVICE = 16
# A session nobody touched for this long is abandoned (the device was wiped, or gave up): its chunks go.
UPLOAD_EXPIRY_SECONDS = 7 * 24 * 3600
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+)")


class UploadNotFound(CollectorError):
    status = 404
    code = "upload_not_found"


class OffsetMismatch(CollectorError):
    """A chunk that does not start where the received bytes end: the client should ask for the offset."""

    status = 416
    code = "offset_mismatch"


class UploadCorrupted(CollectorError):
    """The assembled body does not match the declared SHA-256; the session is gone, start over."""

    status = 409
    code = "upload_corrupted"


class TooManyUploads(CollectorError):
    status = 429
    code = "too_many_uploads"


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
    before it is acknowledged. The last byte completes the record through ``CollectorService.store_record``
    (same limits, same idempotency), then the session's files go. An flock on the part file serialises
    concurrent chunks of one session, across worker processes too.
    """

    def __init__(
        self,
        service: CollectorService,
        folder: Path,
        *,
        max_open_per_device: int = MAX_OPEN_UPLOADS_PER_DEVICE,
        expiry_seconds: float = UPLOAD_EXPIRY_SECONDS,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.service = service
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
        guard = self.service.upload_guard
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
        if request.size > self.service.max_body_bytes:
            raise PayloadTooLarge(
                f"record body is {request.size} bytes, more than {self.service.max_body_bytes}"
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
            body = b"".join(iter(lambda: os.read(fd, _DECOMPRESS_CHUNK), b""))
            return self._complete(session, body)
        finally:
            os.close(fd)  # releases the lock

    def _complete(self, session: UploadSession, body: bytes) -> StoreOutcome:
        if hashlib.sha256(body).hexdigest() != session.sha256:
            self._discard(session.upload_id)
            raise UploadCorrupted(f"upload {session.upload_id} does not match its SHA-256: send it again")
        try:
            outcome = self.service.store_record(session.device_id, session.record_id, body)
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


# --- exemptions, the fleet policy and the audit log --------------------------------------------------

MAX_EXEMPTION_BODY_BYTES = 16 * 1024
MAX_REASON_CHARS = 2000
MAX_ADMIN_NAME_CHARS = 64
MAX_POLICY_BYTES = 256 * 1024
ADMIN_NAME_HEADER = "X-Admin-Name"


class NotFound(CollectorError):
    status = 404
    code = "not_found"


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
        return text, parse_policy(text, source="policy")
    except PolicyError as error:
        raise BadRequest(str(error)) from error


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


def admin_name(header: str | None) -> str:
    """Who the admin says they are (for the audit log); "admin" when they do not say."""
    name = (header or "").strip()
    if not name:
        return "admin"
    if len(name) > MAX_ADMIN_NAME_CHARS or not name.isprintable():
        raise BadRequest(f"{ADMIN_NAME_HEADER} must have at most {MAX_ADMIN_NAME_CHARS} printable characters")
    return name


def _request_json(request: ExemptionRequest) -> dict[str, object]:
    return {
        "id": request.id,
        "device_id": request.device_id,
        "reason": request.reason,
        "delete_collected": request.delete_collected,
        "status": request.status,
        "requested_at": request.requested_at,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at,
    }


class ExemptionService:
    """Exemption requests and decisions, the fleet policy, and the audit trail of all of it.

    Also the collector's upload guard: an exempt device's records are refused (403 ``exempt``) and a
    record that raced an approval is removed again. An approval also discards the device's unfinished
    resumable uploads (``partial_uploads``, set by create_app).
    """

    partial_uploads: ResumableUploads | None = None

    def __init__(
        self,
        service: CollectorService,
        store: ExemptionStore,
        admin_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.store = store
        self.admin_token = admin_token or None
        self.clock = clock

    def _audit(self, actor: str, action: str, device_id: str | None, **details: object) -> AuditRecord:
        return AuditRecord(0, self.clock(), actor, action, device_id, json.dumps(details, sort_keys=True))

    # --- admins ---------------------------------------------------------------------------------------

    def authenticate_admin(self, authorization: str | None) -> None:
        if self.admin_token is None:
            raise Unauthorized("the admin API is off: start the collector with an admin token")
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise Unauthorized("missing or wrong admin token (header Authorization: Bearer <admin token>)")

    def list_requests(self, status: str | None = None) -> list[dict[str, object]]:
        if status is not None and status not in (EXEMPTION_REQUESTED, EXEMPTION_APPROVED, EXEMPTION_DENIED):
            raise BadRequest("status must be requested, approved or denied")
        return [_request_json(request) for request in self.store.requests(status=status)]

    def decide(self, request_id: int, approve: bool, admin: str) -> dict[str, object]:
        """Approve or deny a pending request. Approval with delete_collected deletes every record the
        collector holds from that device (rows in the decision's transaction, then the blobs)."""
        existing = self.store.get_request(request_id)
        if existing is None:
            raise NotFound(f"no exemption request {request_id}")
        if existing.status != EXEMPTION_REQUESTED:
            raise Conflict(f"exemption request {request_id} was already {existing.status}")
        action = "exemption_approved" if approve else "exemption_denied"
        decided = self.store.decide(
            request_id,
            approve,
            admin,
            self.clock(),
            self._audit(f"admin:{admin}", action, existing.device_id),
        )
        if decided is None:
            raise Conflict(f"exemption request {request_id} was decided by someone else just now")
        request, blob_keys = decided
        answer = _request_json(request)
        if approve and self.partial_uploads is not None:
            # Half-uploaded records are the device's data too: nothing of an exempt device stays.
            discarded = self.partial_uploads.discard_device(request.device_id)
            answer["discarded_uploads"] = discarded
            if discarded:
                self.store.append_audit(
                    self._audit(
                        f"admin:{admin}",
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
                    f"admin:{admin}",
                    "collected_data_deleted",
                    request.device_id,
                    request_id=request_id,
                    records=len(blob_keys),
                    blobs=answer["deleted_blobs"],
                )
            )
        return answer

    def _delete_blobs(self, blob_keys: list[str]) -> int:
        deleted = 0
        for key in blob_keys:
            if self.service.blobs.exists(key):
                self.service.blobs.delete(key)
                deleted += 1
        return deleted

    def set_fleet_policy(self, body: bytes, admin: str) -> dict[str, object]:
        if len(body) > MAX_POLICY_BYTES:
            raise PayloadTooLarge(f"policy larger than {MAX_POLICY_BYTES} bytes")
        text, policy = parse_fleet_policy(body)
        self.store.set_fleet_policy(
            text,
            admin,
            self.clock(),
            self._audit(
                f"admin:{admin}",
                "policy_set",
                None,
                sha256=hashlib.sha256(body).hexdigest(),
                mode=policy.mode,
            ),
        )
        return {"status": "stored", "mode": policy.mode}

    def fleet_policy_text(self) -> tuple[str, str, float | None]:
        """The policy devices get: (TOML text, "fleet" or "default", when it was set)."""
        stored = self.store.fleet_policy()
        if stored is None:
            return render_policy_toml(DEFAULT_FLEET_POLICY), "default", None
        return stored.text, "fleet", stored.updated_at

    def audit(self, limit: int = 1000, device_id: str | None = None) -> list[dict[str, object]]:
        if not 1 <= limit <= 100_000:
            raise BadRequest("limit must be between 1 and 100000")
        return [
            {
                "id": entry.id,
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action,
                "device_id": entry.device_id,
                "details": json.loads(entry.details or "{}"),
            }
            for entry in self.store.audit(limit, device_id)
        ]

    # --- devices --------------------------------------------------------------------------------------

    def request_exemption(self, device_id: str, body: ExemptionRequestBody) -> dict[str, object]:
        history = self.store.requests(device_id=device_id)
        if any(request.status == EXEMPTION_APPROVED for request in history):
            raise Conflict("this device is already exempt")
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

    # --- upload guard ---------------------------------------------------------------------------------

    def check_upload_allowed(self, device_id: str) -> None:
        if self.store.is_exempt(device_id):
            self.store.append_audit(self._audit(f"device:{device_id}", "upload_refused_exempt", device_id))
            raise Exempt("this device is exempt from recording: the collector accepts nothing from it")

    def discard_if_exempt(self, device_id: str, record_id: str) -> None:
        if not self.store.is_exempt(device_id):
            return
        blob_key = self.store.delete_record(record_id, device_id)
        if blob_key is not None:
            self.service.blobs.delete(blob_key)
        self.store.append_audit(
            self._audit(f"device:{device_id}", "upload_refused_exempt", device_id, record_removed=True)
        )
        raise Exempt("this device is exempt from recording: the collector accepts nothing from it")
