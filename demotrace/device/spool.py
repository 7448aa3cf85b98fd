"""Encrypted, durable queue of records on the device (SQLite in WAL mode).

Every record is MessagePack-encoded, zstd-compressed and sealed with ChaCha20-Poly1305 before it is
written; the key lives outside the spool folder. The only plaintext columns are what the uploader needs
to schedule work (record id, kind, session id, size, times): never anything typed or shown.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from demotrace.capture.sink import SinkError
from demotrace.device.paths import config_dir
from demotrace.model import Batch, Frame, Record, decode_record, encode_record
from demotrace.protocol import record_id_of

SPOOL_FILE = "spool.db"
KEY_BYTES = 32
NONCE_BYTES = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,
    uploaded_at REAL
);
CREATE INDEX IF NOT EXISTS records_pending ON records (uploaded_at, seq);
"""


class SpoolError(SinkError):
    """The spool cannot be opened or written (wrong key, corrupt file, full disk); recording stops on it."""


def default_key_path() -> Path:
    return config_dir() / "spool.key"


def load_or_create_key(path: Path) -> bytes:
    """Read the spool key, creating it (0600, in a 0700 folder) on first use."""
    if path.exists():
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise SpoolError(f"spool key {path} is {len(key)} bytes, expected {KEY_BYTES}")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ChaCha20Poly1305.generate_key()
    # O_EXCL: two recorders starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


@dataclass(frozen=True)
class SpooledRecord:
    seq: int
    record_id: str
    kind: str
    session_id: str
    size: int
    payload: bytes  # the record's MessagePack bytes, decrypted and decompressed


class Spool:
    """One spool folder. Thread-safe: the recorder writes while the uploader reads and marks."""

    def __init__(self, directory: Path, key: bytes) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._aead = ChaCha20Poly1305(key)
        self._compress = zstandard.ZstdCompressor(level=3)
        self._decompress = zstandard.ZstdDecompressor()
        self._lock = threading.Lock()
        # Set after every commit so an uploader can sleep until there is work, without polling.
        self.committed = threading.Event()
        try:
            self._db = sqlite3.connect(directory / SPOOL_FILE, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss, not only a process kill.
            self._db.execute("PRAGMA synchronous=FULL")
            # Deleted or replaced records (unscrubbed frames, an exemption's unsent data) are zeroed,
            # not left in free pages.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise SpoolError(f"cannot open spool {directory}: {error}") from error

    def _seal(self, record_id: str, plain: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        # The record id is authenticated too: a sealed blob cannot be moved to another row.
        return nonce + self._aead.encrypt(nonce, self._compress.compress(plain), record_id.encode())

    def _open(self, record_id: str, sealed: bytes) -> bytes:
        try:
            packed = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], record_id.encode())
        except Exception as error:  # cryptography raises InvalidTag without a message
            raise SpoolError(f"record {record_id} does not decrypt: wrong key or tampered spool") from error
        return self._decompress.decompress(packed)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One durable write transaction under the lock; a failure rolls back and raises SpoolError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise SpoolError(f"cannot write to spool {self.directory}: {error}") from error

    def append(self, records: Sequence[Record], held: bool = False) -> None:
        """Write records in one durable transaction; a duplicate record id is stored once.

        ``held`` records (frames waiting for their screen scrub) are never offered for upload until
        ``replace_held`` releases them.
        """
        if not records:
            return
        rows = []
        now = time.time()
        for record in records:
            record_id = record_id_of(record)
            plain = encode_record(record)
            kind = "batch" if isinstance(record, Batch) else "frame"
            sealed = self._seal(record_id, plain)
            rows.append((record_id, kind, record.session_id, now, len(plain), sealed, int(held)))
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO records (record_id, kind, session_id, created, size, sealed, held)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        self.committed.set()

    def pending(self, limit: int = 100, max_bytes: int | None = None) -> list[SpooledRecord]:
        """Records not yet uploaded, oldest first; at most ``limit`` of them and about ``max_bytes``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, record_id, kind, session_id, size, sealed FROM records"
                " WHERE uploaded_at IS NULL AND held = 0 ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        out: list[SpooledRecord] = []
        total = 0
        for seq, record_id, kind, session_id, size, sealed in rows:
            if max_bytes is not None and out and total + size > max_bytes:
                break
            total += size
            out.append(SpooledRecord(seq, record_id, kind, session_id, size, self._open(record_id, sealed)))
        return out

    def mark_uploaded(self, record_ids: Sequence[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE records SET uploaded_at = ? WHERE record_id = ?",
                [(time.time(), record_id) for record_id in record_ids],
            )
            self._db.execute("COMMIT")

    def held(self, limit: int = 100) -> list[Record]:
        """Records held back from upload (oldest first), decrypted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record_id, sealed FROM records WHERE held = 1 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [decode_record(self._open(record_id, sealed)) for record_id, sealed in rows]

    def replace_held(self, record: Record) -> None:
        """Overwrite a held record (e.g. with its scrubbed frame) and release it for upload."""
        record_id = record_id_of(record)
        plain = encode_record(record)
        sealed = self._seal(record_id, plain)
        with self._write() as db:
            db.execute(
                "UPDATE records SET sealed = ?, size = ?, held = 0 WHERE record_id = ? AND held = 1",
                (sealed, len(plain), record_id),
            )
        self.committed.set()

    def pending_count(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL").fetchone()
        return int(count)

    def iter_records(self) -> Iterator[Record]:
        """Every record in the spool, decrypted, in commit order."""
        with self._lock:
            rows = self._db.execute("SELECT record_id, sealed FROM records ORDER BY seq").fetchall()
        for record_id, sealed in rows:
            yield decode_record(self._open(record_id, sealed))

    def batches(self) -> Iterator[Batch]:
        for record in self.iter_records():
            if isinstance(record, Batch):
                yield record

    def load_frame(self, frame_id: str) -> Frame | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sealed FROM records WHERE record_id = ? AND kind = 'frame'", (frame_id,)
            ).fetchone()
        if row is None:
            return None
        record = decode_record(self._open(frame_id, row[0]))
        return record if isinstance(record, Frame) else None

    def delete_unsent(self) -> int:
        """Drop every record that was not uploaded (an exemption or an opt-out); returns how many."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM records WHERE uploaded_at IS NULL")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cursor.rowcount

    def stats(self) -> dict[str, int]:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(LENGTH(sealed)), 0),"
                " COALESCE(SUM(uploaded_at IS NULL), 0) FROM records"
            ).fetchone()
        return {"records": row[0], "plain_bytes": row[1], "sealed_bytes": row[2], "pending": row[3]}

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class Backlog:
    records: int
    bytes: int
    oldest_created: float | None  # wall time the oldest pending record was spooled


class SpoolBacklogReader:
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


def open_spool(directory: Path, key_path: Path | None = None) -> Spool:
    return Spool(directory, load_or_create_key(key_path or default_key_path()))
