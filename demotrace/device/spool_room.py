"""Room in the spool: the quota, a full disk, and what had to be dropped for either.

Events are never dropped. When the spool passes its quota, or the disk is full, the oldest unsent frames
go first, each with the frames that were encoded against it (a delta without its base is useless). A
small reserve file is kept beside the database: on a full disk it is deleted so SQLite has room to
record the deletions, and made again once the disk has room. What was dropped is counted in the
database itself (table ``drops``), shown by ``demotrace status`` and reported to the collector.

Every function here runs on the spool's connection under the spool's lock, inside its transaction.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESERVE_FILE = "spool.reserve"
RESERVE_BYTES = 256 * 1024
# Free space the disk must have (beyond the reserve) before the reserve is made again.
_RESERVE_MARGIN = 2

DROP_QUOTA = "quota"
DROP_DISK_FULL = "disk_full"

SCHEMA = """
CREATE TABLE IF NOT EXISTS drops (
    reason TEXT PRIMARY KEY,
    dropped INTEGER NOT NULL DEFAULT 0,
    reported INTEGER NOT NULL DEFAULT 0
);
"""


class NoRoom(Exception):
    """The disk is full (SQLite's SQLITE_FULL, or ENOSPC from the file system)."""


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(error)
    return isinstance(error, OSError) and error.errno == errno.ENOSPC


@dataclass(frozen=True)
class DropCounts:
    """Frames dropped for the quota and for a full disk: in all, and not yet reported to the collector."""

    quota: int = 0
    disk_full: int = 0
    unreported_quota: int = 0
    unreported_disk_full: int = 0

    @property
    def total(self) -> int:
        return self.quota + self.disk_full


def add_base_column(db: sqlite3.Connection) -> None:
    """The id of the frame a delta frame was encoded against (plaintext: an id, nothing shown)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    if "base_id" not in columns:
        db.execute("ALTER TABLE records ADD COLUMN base_id TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS records_base ON records (base_id)")


def sealed_bytes(db: sqlite3.Connection) -> int:
    (total,) = db.execute("SELECT COALESCE(SUM(LENGTH(sealed)), 0) FROM records").fetchone()
    return int(total)


def evict_frames(db: sqlite3.Connection, more: Callable[[int], bool], reason: str) -> int:
    """Delete the oldest unsent frames (and the deltas built on them) while ``more(bytes freed so far)``
    says so and any is left; count them under ``reason``. Returns how many frames went."""
    freed = 0
    dropped = 0
    while more(freed):
        oldest = db.execute(
            "SELECT record_id FROM records WHERE kind = 'frame' AND uploaded_at IS NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        if oldest is None:
            break
        chain = [oldest[0]]
        frontier = [oldest[0]]
        while frontier:  # deltas encoded against a dropped frame cannot be rebuilt: they go too
            marks = ",".join("?" * len(frontier))
            frontier = [
                row[0]
                for row in db.execute(
                    f"SELECT record_id FROM records WHERE uploaded_at IS NULL AND base_id IN ({marks})",
                    frontier,
                )
            ]
            chain += frontier
        marks = ",".join("?" * len(chain))
        (size,) = db.execute(
            f"SELECT COALESCE(SUM(LENGTH(sealed)), 0) FROM records WHERE record_id IN ({marks})", chain
        ).fetchone()
        db.execute(f"DELETE FROM records WHERE record_id IN ({marks})", chain)
        freed += int(size)
        dropped += len(chain)
    if dropped:
        count_drops(db, reason, dropped)
    return dropped


def count_drops(db: sqlite3.Connection, reason: str, count: int) -> None:
    db.execute(
        "INSERT INTO drops (reason, dropped) VALUES (?, ?)"
        " ON CONFLICT (reason) DO UPDATE SET dropped = dropped + excluded.dropped",
        (reason, count),
    )


def read_drops(db: sqlite3.Connection) -> DropCounts:
    rows = {reason: (dropped, reported) for reason, dropped, reported in db.execute("SELECT * FROM drops")}
    quota, quota_reported = rows.get(DROP_QUOTA, (0, 0))
    full, full_reported = rows.get(DROP_DISK_FULL, (0, 0))
    return DropCounts(quota, full, max(0, quota - quota_reported), max(0, full - full_reported))


def mark_reported(db: sqlite3.Connection, counts: DropCounts) -> None:
    """Record that the collector was told of ``counts`` (drops counted since stay unreported)."""
    db.executemany(
        "UPDATE drops SET reported = ? WHERE reason = ?",
        [(counts.quota, DROP_QUOTA), (counts.disk_full, DROP_DISK_FULL)],
    )


class Reserve:
    """A file of RESERVE_BYTES beside the spool, given up when the disk is full and made again later."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RESERVE_FILE
        self.ensure()

    def release(self) -> bool:
        """Delete the reserve to make room; False if there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def ensure(self) -> None:
        """Make the reserve again if it is missing and the disk has ample room for it."""
        if self.path.exists():
            return
        try:
            if shutil.disk_usage(self.path.parent).free < RESERVE_BYTES * _RESERVE_MARGIN:
                return
            with open(self.path, "wb") as handle:
                # Real blocks, not a sparse file: writing zeros is what takes the space.
                handle.write(bytes(RESERVE_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)
