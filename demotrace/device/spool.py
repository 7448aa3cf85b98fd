"""Encrypted, durable queue of records on the device (SQLite in WAL mode).

Every record is MessagePack-encoded, zstd-compressed and sealed with ChaCha20-Poly1305 before it is
written; the key lives outside the spool folder. The only plaintext columns are what the uploader needs
to schedule work (record id, kind, session id, size, times, the base frame's id): never anything typed
or shown. Records are deleted once the collector has acknowledged them.

A quota and a full disk never stop the recording and never cost an event: the oldest unsent frames go
first (spool_room.py), a frame with no room is refused with RecordDropped (the action is kept without
it), and events that find the disk full wait in memory and are written first once there is room.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

# libsodium's ChaCha20-Poly1305 (IETF), as cryptography's was (same layout): 6 MB less resident.
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt as unseal
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt as seal

from demotrace.capture.sink import RecordDropped, SinkError
from demotrace.device import spool_room
from demotrace.device.paths import config_dir
from demotrace.device.spool_room import DROP_DISK_FULL, DROP_QUOTA, DropCounts, NoRoom, Reserve
from demotrace.model import Batch, Frame, Record, decode_record, encode_record
from demotrace.protocol import record_id_of
from demotrace.wording import plural

SPOOL_FILE = "spool.db"
KEY_BYTES = 32
NONCE_BYTES = 12
# Events that found the disk full wait in memory, up to this much; past it the recording stops.
MAX_UNWRITTEN_BYTES = 64 * 1024 * 1024
# The WAL file is cut back to this size after a checkpoint, so a burst does not keep its space.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
PAGE_CACHE_KIB = 256

log = logging.getLogger(__name__)

_Row = tuple[str, str, str, float, int, bytes, int, str | None]

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
    key = os.urandom(KEY_BYTES)
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
    """One spool folder. Thread-safe: the recorder writes while the uploader reads and marks.

    ``quota_bytes`` bounds the database's pages in use: past it, the oldest unsent frames go. Events
    are always written, quota or not. ``disk_full`` says whether the last write found no room.
    """

    def __init__(self, directory: Path, key: bytes, quota_bytes: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.quota_bytes = quota_bytes
        self.disk_full = False
        self._unwritten: list[_Row] = []  # events that found the disk full, oldest first
        self._unwritten_bytes = 0
        self._uncounted_drops = 0  # frames refused while even the count could not be written
        self._key = key
        # One zstd (de)compressor per thread: python-zstandard's are not thread-safe, and the recorder
        # seals frames on its encode thread while it seals batches on its processing thread (two
        # threads compressing with one compressor crashed the process; reading while another thread
        # reads gave "Data corruption detected" on a sound record).
        self._codecs = threading.local()
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
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            # Checkpoint every 1 MiB of WAL rather than 4: on a nearly full disk the WAL is what grows.
            self._db.execute("PRAGMA wal_autocheckpoint=256")
            # Records are written and read back once (the OS caches the file): SQLite's 2 MiB stayed resident.
            self._db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            self._db.executescript(_SCHEMA + spool_room.SCHEMA)
            spool_room.add_base_column(self._db)
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        except sqlite3.DatabaseError as error:
            raise SpoolError(f"cannot open spool {directory}: {error}") from error
        self._reserve = Reserve(directory)

    def _compressor(self) -> zstandard.ZstdCompressor:
        codec = getattr(self._codecs, "compressor", None)
        if codec is None:
            codec = self._codecs.compressor = zstandard.ZstdCompressor(level=3)
        return codec

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        codec = getattr(self._codecs, "decompressor", None)
        if codec is None:
            codec = self._codecs.decompressor = zstandard.ZstdDecompressor()
        return codec

    def _seal(self, record_id: str, plain: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        # The record id is authenticated too: a sealed blob cannot be moved to another row.
        return nonce + seal(self._compressor().compress(plain), record_id.encode(), nonce, self._key)

    def _open(self, record_id: str, sealed: bytes) -> bytes:
        try:
            packed = unseal(sealed[NONCE_BYTES:], record_id.encode(), sealed[:NONCE_BYTES], self._key)
        except Exception as error:  # libsodium's CryptoError says nothing more
            raise SpoolError(f"record {record_id} does not decrypt: wrong key or tampered spool") from error
        return self._decompressor().decompress(packed)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable write transaction (the caller holds the lock); a failure rolls back and raises
        NoRoom for a full disk, SpoolError otherwise."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            if spool_room.is_disk_full(error):
                raise NoRoom(str(error)) from error
            raise SpoolError(f"cannot write to spool {self.directory}: {error}") from error

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One durable write transaction under the lock; a full disk is tried again once after the
        reserve is given up (a write that frees space needs room in the WAL too)."""
        with self._lock:
            try:
                with self._transaction() as db:
                    yield db
            except NoRoom:
                if not self._reserve.release():
                    raise SpoolError(f"cannot write to spool {self.directory}: the disk is full") from None
                with self._transaction() as db:
                    yield db

    def _checkpoint(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _pages_in_use(self, db: sqlite3.Connection) -> int:
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        return int(pages - free) * self._page_size

    def append(self, records: Sequence[Record], held: bool = False) -> None:
        """Write records in one durable transaction; a duplicate record id is stored once.

        ``held`` records (frames waiting for their screen scrub) are never offered for upload until
        ``replace_held`` releases them. Frames with no room (quota, full disk) raise RecordDropped
        after older frames were given up for them; events are never dropped (see the module doc).
        """
        if not records:
            return
        rows: list[_Row] = []
        now = time.time()
        for record in records:
            record_id = record_id_of(record)
            plain = encode_record(record)
            kind = "batch" if isinstance(record, Batch) else "frame"
            sealed = self._seal(record_id, plain)
            base = record.base_frame_id if isinstance(record, Frame) else None
            rows.append((record_id, kind, record.session_id, now, len(plain), sealed, int(held), base))
        droppable = all(row[1] == "frame" for row in rows)
        with self._lock:
            stored = self._append_locked(rows, droppable)
        self.committed.set()
        if not stored:
            raise RecordDropped(
                f"no room in spool {self.directory} for {plural(len(rows), 'frame')}: dropped"
            )

    def _append_locked(self, rows: list[_Row], droppable: bool) -> bool:
        """Write the events waiting in memory and ``rows``; False if ``rows`` (frames) were dropped."""
        waiting, self._unwritten, self._unwritten_bytes = self._unwritten, [], 0
        size = sum(len(row[5]) for row in rows)
        stored = self._try_insert(waiting, rows, droppable, size)
        if stored is None:
            return self._insert_after_full(waiting, rows, droppable, size)
        self.disk_full = False
        self._reserve.ensure()
        return stored

    def _try_insert(self, waiting: list[_Row], rows: list[_Row], droppable: bool, size: int) -> bool | None:
        """One transaction of ``_insert``; None when the disk is full (nothing was written)."""
        uncounted = self._uncounted_drops
        try:
            with self._transaction() as db:
                return self._insert(db, waiting, rows, droppable, size)
        except NoRoom:
            self._uncounted_drops = uncounted
            return None
        except BaseException:
            self._uncounted_drops = uncounted
            raise

    def _insert(
        self, db: sqlite3.Connection, waiting: list[_Row], rows: list[_Row], droppable: bool, size: int
    ) -> bool:
        if self.quota_bytes is not None:
            quota = self.quota_bytes

            def over_quota() -> bool:
                return self._pages_in_use(db) + size > quota

            if over_quota():
                spool_room.evict_frames(db, lambda _freed: over_quota(), DROP_QUOTA)
            if droppable and over_quota():
                spool_room.count_drops(db, DROP_QUOTA, len(rows))
                rows = []
        if self._uncounted_drops:
            spool_room.count_drops(db, DROP_DISK_FULL, self._uncounted_drops)
            self._uncounted_drops = 0  # restored by the caller if this transaction fails
        db.executemany(
            "INSERT OR IGNORE INTO records"
            " (record_id, kind, session_id, created, size, sealed, held, base_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            waiting + rows,
        )
        return bool(rows)

    def _insert_after_full(self, waiting: list[_Row], rows: list[_Row], droppable: bool, size: int) -> bool:
        """The disk is full: give up the reserve and the oldest unsent frames, then try once more; a
        frame that still finds no room is dropped, events wait in memory (within MAX_UNWRITTEN_BYTES)."""
        self.disk_full = True
        # The WAL is what fills the disk: written back into the database's free pages, and cut to
        # nothing, it gives its space back. Then the reserve, for the deletions to be logged.
        self._checkpoint()
        self._reserve.release()
        # Room for what waits to be written, and at least a reserve's worth so the next writes fit too.
        needed = max(size + sum(len(row[5]) for row in waiting), spool_room.RESERVE_BYTES)
        with contextlib.suppress(NoRoom, SpoolError), self._transaction() as db:
            spool_room.evict_frames(db, lambda freed: freed < needed, DROP_DISK_FULL)
        self._checkpoint()
        stored = self._try_insert(waiting, rows, droppable, size)
        if stored is not None:
            return stored
        if droppable:
            self._unwritten = waiting
            self._unwritten_bytes = sum(len(row[5]) for row in waiting)
            self._uncounted_drops += len(rows)  # written with the next transaction that fits
            return False
        self._unwritten = waiting + rows
        self._unwritten_bytes = sum(len(row[5]) for row in self._unwritten)
        if self._unwritten_bytes > MAX_UNWRITTEN_BYTES:
            raise SpoolError(
                f"spool {self.directory}: the disk has been full for {self._unwritten_bytes} bytes of "
                "events and there are no frames left to give up: free some space"
            )
        return True

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
        """The collector has these records: delete them (zeroed, see secure_delete) to give the room back."""
        with self._write() as db:
            db.executemany(
                "DELETE FROM records WHERE record_id = ?", [(record_id,) for record_id in record_ids]
            )
        if self.disk_full and self._unwritten:
            with self._lock:  # events waiting for room go in now that there is some
                self._append_locked([], droppable=False)

    def drops(self) -> DropCounts:
        """Frames dropped for the quota or a full disk, in all and not yet reported to the collector."""
        with self._lock:
            counts = spool_room.read_drops(self._db)
            extra = self._uncounted_drops
        return dataclasses.replace(
            counts,
            disk_full=counts.disk_full + extra,
            unreported_disk_full=counts.unreported_disk_full + extra,
        )

    def drops_reported(self, counts: DropCounts) -> None:
        """The collector was told of ``counts`` (from ``drops()``)."""
        with self._write() as db:
            spool_room.mark_reported(db, counts)

    def room(self) -> dict[str, object]:
        """What ``demotrace status`` shows about space: frames dropped, a full disk, events waiting."""
        counts = self.drops()
        return {
            "frames_dropped": counts.total,
            "frames_dropped_quota": counts.quota,
            "frames_dropped_disk_full": counts.disk_full,
            "disk_full": self.disk_full,
            "events_waiting_for_room": len(self._unwritten),
        }

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

    def batch_ids_by_session(self) -> dict[str, list[str]]:
        """Batch record ids by session id, in commit order, from the plaintext columns alone."""
        with self._lock:
            rows = self._db.execute(
                "SELECT session_id, record_id FROM records WHERE kind = 'batch' ORDER BY seq"
            )
            by_session: dict[str, list[str]] = {}
            for session_id, record_id in rows:
                by_session.setdefault(session_id, []).append(record_id)
        return by_session

    def load_batch(self, record_id: str) -> Batch | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sealed FROM records WHERE record_id = ? AND kind = 'batch'", (record_id,)
            ).fetchone()
        record = decode_record(self._open(record_id, row[0])) if row is not None else None
        return record if isinstance(record, Batch) else None

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
            if self._unwritten:  # a last try for events that waited for room
                try:
                    with self._transaction() as db:
                        self._insert(db, self._unwritten, [], False, 0)
                except (SpoolError, NoRoom) as error:
                    log.error("%d event batches lost: the disk stayed full (%s)", len(self._unwritten), error)
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


def open_spool(directory: Path, key_path: Path | None = None, quota_bytes: int | None = None) -> Spool:
    return Spool(directory, load_or_create_key(key_path or default_key_path()), quota_bytes)
