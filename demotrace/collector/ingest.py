"""Ingest: enrol devices, authenticate them by token, and store the records they upload.

Framework-free: every refusal is a CollectorError (see errors.py) that the web layer translates.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import zstandard

from demotrace.collector.errors import (
    BadRequest,
    Busy,
    CollectorError,
    Conflict,
    PayloadTooLarge,
    Unauthorized,
)
from demotrace.collector.limits import MemoryBudget, MemoryReservation
from demotrace.collector.store import BlobStore, KeyRing, MetadataStore, StoredRecord
from demotrace.collector.upload_guard import UploadGuard
from demotrace.frames.bounds import check_frame_size
from demotrace.frames.delta import FrameCodecError
from demotrace.memory import MMAP_THRESHOLD_BYTES
from demotrace.model import Batch, Frame, Record, decode_record, encode_record
from demotrace.protocol import ENROLLMENT_SECRET_HEADER, record_id_of

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_ENROLL_BODY_BYTES = 64 * 1024
# zstd's decoder allocates its window up front: cap it so a forged frame header cannot ask for 2 GiB.
# 32 MiB covers every level up to 21 (window log 25) with room to spare.
MAX_ZSTD_WINDOW_BYTES = 1 << 25
# As large as malloc's mapping threshold: each chunk is its own mapping, unmapped when freed. At 1 MiB the
# chunks of a refused zstd bomb (64 MiB) filled a thread's heap, and that heap stayed resident
# (tests/test_collector_limits.py: +67 MiB held after the round, 3 of 14 runs five at a time).
STREAM_CHUNK_BYTES = MMAP_THRESHOLD_BYTES
"""Bodies are decompressed (and upload parts read back) this much at a time."""
_BLOB_COMPRESSION_LEVEL = 3

# Record ids become part of blob keys: keep them to characters that are safe in any file or object name.
RECORD_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_SESSION_ID_CHARS = 256
MAX_DEVICE_NAME_CHARS = 256
MAX_TOKEN_CHARS = 512
# A person id is a pseudonym (from the portal, an HR system's opaque id...): no '@', so an e-mail
# address cannot be used by mistake.
PERSON_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
MAX_SEQ = 2**63 - 1

# Uploads being decompressed, checked and written at once: keeps a PostgreSQL backend busy without
# queueing threads behind SQLite's single writer for long. Their memory is bounded apart, by the
# ingest memory budget (limits.py): each reserves its body and twice its record as they grow.
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

    def _refuse_if_full(self) -> None:
        if self._in_use >= self.limit:
            raise Busy(
                f"the collector is storing {self.limit} uploads already: retry in {self.retry_after} s",
                self.retry_after,
            )

    def check_free(self) -> None:
        """Raise Busy if every slot is taken now: shed load before a body is read."""
        with self._lock:
            self._refuse_if_full()

    def acquire(self) -> None:
        """Take a slot, or raise Busy at once if all are taken (never waits)."""
        with self._lock:
            self._refuse_if_full()
            self._in_use += 1

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1


class EnrollRequest(msgspec.Struct):
    device_name: str
    person_id: str | None = None  # None: a person of its own, with a new random id


@dataclass(frozen=True)
class DeviceEnrollment:
    """What an enrolment body asks for, checked."""

    device_name: str
    person_id: str | None


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    token: str  # shown once, to the device; only its SHA-256 is stored
    person_id: str


@dataclass(frozen=True)
class StoreOutcome:
    record_id: str
    device_id: str
    created: bool  # False: the same record was stored before (a re-send)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_enroll_request(body: bytes) -> DeviceEnrollment:
    """The device name (stripped) and person id of an enrolment body; raises BadRequest."""
    if len(body) > MAX_ENROLL_BODY_BYTES:
        raise PayloadTooLarge(f"enrolment body larger than {MAX_ENROLL_BODY_BYTES} bytes")
    try:
        request = msgspec.json.decode(body, type=EnrollRequest)
    except msgspec.DecodeError as error:
        raise BadRequest(f'expected JSON {{"device_name": "...", "person_id": "..."}}: {error}') from error
    name = request.device_name.strip()
    if not name or len(name) > MAX_DEVICE_NAME_CHARS or not name.isprintable():
        raise BadRequest(f"device_name must have 1 to {MAX_DEVICE_NAME_CHARS} printable characters")
    if request.person_id is not None:
        check_person_id(request.person_id)
    return DeviceEnrollment(name, request.person_id)


def check_person_id(person_id: str) -> str:
    if not PERSON_ID_PATTERN.fullmatch(person_id):
        raise BadRequest(
            "person_id must be a pseudonym of 1 to 64 of A-Z a-z 0-9 _ - . (not an e-mail address)"
        )
    return person_id


def decompress_bounded(
    body: bytes, max_output_bytes: int, on_output: Callable[[int], None] | None = None
) -> bytes | bytearray:
    """Decompress zstd data, refusing (PayloadTooLarge) as soon as the output passes ``max_output_bytes``.

    A small body that expands to gigabytes (a zstd bomb) costs at most ``max_output_bytes`` of memory,
    never more. ``on_output`` is told of each allocation before it is made (it may refuse by raising:
    a memory budget).

    When the frame header declares its size (the device's compressor always does), the output is
    decompressed into one buffer of exactly that size, and a body that holds more or less than it said
    is refused: one mapped allocation, given back whole when freed, where a list of 1 MiB chunks left
    holes in the heap (measured by bench/collector_memory.py: ~340 MiB still held after a round).
    Otherwise it streams in chunks of ``STREAM_CHUNK_BYTES``.
    """
    if not body:
        raise BadRequest("empty body: expected a zstd-compressed MessagePack record")
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW_BYTES)
    chunks: list[bytes] = []
    total = 0
    try:
        declared = zstandard.frame_content_size(body)
        if declared > max_output_bytes:
            raise PayloadTooLarge(f"record decompresses to {declared} bytes, more than {max_output_bytes}")
        if declared >= 0:
            return _decompress_declared(decompressor, body, declared, on_output)
        with decompressor.stream_reader(body, read_across_frames=True) as reader:
            while chunk := reader.read(STREAM_CHUNK_BYTES):
                total += len(chunk)
                if total > max_output_bytes:
                    raise PayloadTooLarge(f"record decompresses to more than {max_output_bytes} bytes")
                if on_output is not None:
                    on_output(len(chunk))
                chunks.append(chunk)
    except zstandard.ZstdError as error:
        raise BadRequest(f"body is not valid zstd data: {error}") from error
    return b"".join(chunks)


def _decompress_declared(
    decompressor: zstandard.ZstdDecompressor,
    body: bytes,
    declared: int,
    on_output: Callable[[int], None] | None,
) -> bytearray:
    if on_output is not None:
        on_output(declared)
    out = bytearray(declared)
    view = memoryview(out)
    filled = 0
    with decompressor.stream_reader(body, read_across_frames=True) as reader:
        while filled < declared and (count := reader.readinto(view[filled:])):
            filled += count
        extra = reader.read(1)
    view.release()
    if filled != declared or extra:
        raise BadRequest(f"body does not decompress to the {declared} bytes its header declares")
    return out


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


def _check_frame(record: Record) -> None:
    """A frame's declared size within what any decoder may later be handed."""
    if not isinstance(record, Frame):
        return
    try:
        check_frame_size(record.width, record.height)
    except FrameCodecError as error:
        raise BadRequest(str(error)) from error


def decode_upload(
    body: bytes, max_record_bytes: int, on_output: Callable[[int], None] | None = None
) -> Record:
    """The record in an upload body (zstd-compressed MessagePack), checked before anything stores it:
    at most ``max_record_bytes`` decompressed, a record of ours, values any database holds, a frame
    within the size bounds. Raises BadRequest or PayloadTooLarge, and nothing else, whatever the body
    (bench/fuzz_decoder.py holds it to that)."""
    return _checked(_decoded(decompress_bounded(body, max_record_bytes, on_output)))


def _checked(record: Record) -> Record:
    """The record, if any database holds its values and its frame is within the size bounds."""
    _check_fits_in_database(record)
    _check_frame(record)
    return record


def _decoded(plain: bytes | bytearray) -> Record:
    try:
        return decode_record(plain)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as error:
        # msgspec raises UnicodeDecodeError for a string that is not UTF-8.
        raise BadRequest(f"body is not a demotrace record: {error}") from error


class IngestService:
    """Enrolment, device authentication and idempotent record storage.

    ``upload_guard``, when given, refuses records from exempt devices (see upload_guard.py);
    ``keyring``, when given, seals every blob with its person's data key (see store/keyring.py).
    """

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        *,
        upload_guard: UploadGuard | None = None,
        keyring: KeyRing | None = None,
        enrollment_secret: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.memory = memory
        self.metadata = metadata
        self.blobs = blobs
        self.upload_guard = upload_guard
        self.keyring = keyring
        self.enrollment_secret = enrollment_secret or None
        self.max_body_bytes = max_body_bytes
        self.max_record_bytes = max_record_bytes

    def enroll(
        self, device_name: str, presented_secret: str | None = None, person_id: str | None = None
    ) -> Enrollment:
        """A new device and its token, for ``person_id`` (their first device adds them) or, without
        one, for a new person of its own."""
        if self.enrollment_secret is not None and not (
            presented_secret is not None
            and hmac.compare_digest(presented_secret.encode(), self.enrollment_secret.encode())
        ):
            raise Unauthorized(f"enrolment secret missing or wrong (header {ENROLLMENT_SECRET_HEADER})")
        device_id = uuid.uuid4().hex
        token = secrets.token_urlsafe(32)
        person = check_person_id(person_id) if person_id is not None else f"p-{uuid.uuid4().hex}"
        self.metadata.add_device(device_id, device_name, token_digest(token), time.time(), person)
        return Enrollment(device_id=device_id, token=token, person_id=person)

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

    def store_record(
        self, device_id: str, record_id: str, body: bytes, memory: MemoryReservation | None = None
    ) -> StoreOutcome:
        """Ingest one uploaded record (zstd-compressed MessagePack) for an authenticated device.

        Idempotent: the same record again answers ``created=False`` and stores nothing new; a different
        record under a stored id (or a stored id from another device) is a Conflict.

        Twice the decompressed record is charged to ``memory`` (else, with the body, to a reservation
        of its own on the service's budget) as it grows: the record and its decoded copy, then the
        decoded copy and the re-encoded one, are what it holds at most.
        Over budget: Busy, and nothing is stored.
        """
        if memory is None and self.memory is not None:
            with self.memory.reservation() as own:
                own.add(len(body))  # a body read back from disk (resumable uploads) is held too
                return self.store_record(device_id, record_id, body, own)
        if self.upload_guard is not None:
            self.upload_guard.check_upload_allowed(device_id)
        if not RECORD_ID_PATTERN.fullmatch(record_id):
            raise BadRequest("record id must be 1 to 128 of A-Z a-z 0-9 _ - . and not start with '.'")
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"body larger than {self.max_body_bytes} bytes")
        charge = None if memory is None else (lambda size: memory.add(2 * size))
        plain = decompress_bounded(body, self.max_record_bytes, charge)
        record = _decoded(plain)
        del plain  # the decoded record holds its own copy of a frame's data
        if record_id_of(record) != record_id:
            raise BadRequest(f"record id in the body ({record_id_of(record)!r}) differs from the URL's")
        _checked(record)

        stored = encode_record(_owned_by(record, device_id))
        digest = hashlib.sha256(stored).hexdigest()
        existing = self.metadata.get_record(record_id)
        if existing is not None:
            return self._resent(existing, device_id, digest)

        kind = "batch" if isinstance(record, Batch) else "frame"
        # The digest in the key: two different bodies under one id never write the same blob.
        blob_key = f"{kind}/{device_id}/{record_id}.{digest[:16]}.msgpack.zst"
        blob = zstandard.ZstdCompressor(level=_BLOB_COMPRESSION_LEVEL).compress(stored)
        person_id = self.metadata.person_of(device_id)
        if person_id is None:  # pragma: no cover - authenticated devices exist
            raise Unauthorized("unknown device")
        if self.keyring is not None:
            blob = self.keyring.seal(person_id, blob_key, blob)
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
            person_id=person_id,
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
        # One answer whether the id is another device's or this one's with other contents: a sender
        # learns nothing about other devices' records from it.
        if existing.device_id != device_id or existing.sha256 != digest:
            raise Conflict(f"record id {existing.record_id} is taken: give this record a new id")
        return StoreOutcome(record_id=existing.record_id, device_id=device_id, created=False)
