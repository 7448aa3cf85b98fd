"""The collector's logic, free of any web framework: enrol devices, authenticate them, ingest records.

Every failure a client can cause raises a CollectorError that carries its HTTP status, so the web layer
only translates; nothing a client sends can make this module raise anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass

import msgspec
import zstandard

from demotrace.collector.store import BlobStore, MetadataStore, StoredRecord
from demotrace.model import Batch, Frame, Record, decode_record, encode_record

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
