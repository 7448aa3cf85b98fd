"""Metadata of people, enrolled devices and received records, in SQL (SQLAlchemy 2).

One setting picks the backend: a database URL. SQLite in the data folder by default
(``sqlite:///DATA/collector.db``); a PostgreSQL URL (``postgresql+psycopg://...``) for fleets. The schema
is tables.py's, reached through the Alembic migrations (migrate.py) when a store opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, delete, event, func, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from demotrace.collector.store.exemption_store import AuditRecord, _audit_entry
from demotrace.collector.store.group_commit import GroupCommitter
from demotrace.collector.store.migrate import upgrade_database
from demotrace.collector.store.tables import (
    DeviceEntry,
    LeaseEntry,
    PersonEntry,
    RecordEntry,
)

DATABASE_FILE = "collector.db"
# Rows deleted per transaction by the bulk deletions (a person, retention): short transactions keep
# uploads flowing while a large deletion runs.
DELETE_CHUNK_ROWS = 500


@dataclass(frozen=True)
class StoredRecord:
    """One records row, detached from any database session."""

    record_id: str
    kind: str
    device_id: str
    session_id: str
    seq: int | None
    t: float | None
    wall: float | None
    size: int
    blob_key: str
    blob_size: int
    sha256: str
    received_at: float
    person_id: str

    @staticmethod
    def from_entry(entry: RecordEntry) -> StoredRecord:
        return StoredRecord(
            record_id=entry.record_id,
            kind=entry.kind,
            device_id=entry.device_id,
            session_id=entry.session_id,
            seq=entry.seq,
            t=entry.t,
            wall=entry.wall,
            size=entry.size,
            blob_key=entry.blob_key,
            blob_size=entry.blob_size,
            sha256=entry.sha256,
            received_at=entry.received_at,
            person_id=entry.person_id,
        )


@dataclass(frozen=True)
class SessionRows:
    """One session as the metadata knows it, without reading a blob (for lineage checks)."""

    device_id: str
    session_id: str
    person_id: str
    batches: int
    frames: int


@dataclass(frozen=True)
class DeletedRows:
    """What a bulk deletion removed: the rows' blob keys (to delete next), and whose they were."""

    blob_keys: list[str]
    sessions: set[tuple[str, str]]  # (device_id, session_id)

    @property
    def records(self) -> int:
        return len(self.blob_keys)


_RECORD_BY_ID = select(RecordEntry.__table__).where(
    RecordEntry.__table__.c.record_id == bindparam("record_id")
)


_PERSON_OF_DEVICE = select(DeviceEntry.person_id).where(DeviceEntry.device_id == bindparam("device_id"))


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / DATABASE_FILE).resolve()}"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    # WAL lets the reader build datasets while uploads land; FULL: a 201 survives power loss, since the
    # device drops its copy from the upload queue once it gets one.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A deleted data key (crypto-shredding) or record row is overwritten in the file, not just unlinked.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def create_metadata_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # Requests run on a thread pool; the pool hands each thread its own checked-out connection.
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True)


def ensure_person(session: Session, person_id: str, at: float) -> None:
    """Add the person if the database does not have them yet (in the caller's transaction)."""
    if session.get(PersonEntry, person_id) is None:
        session.add(PersonEntry(person_id=person_id, created_at=at))
        session.flush()


class MetadataStore:
    """People, devices and record rows. Thread-safe: every call uses its own short database session.

    ``migrate``: bring the database to the schema this code needs first (see migrate.py); off for
    readers and for collector workers whose starter migrated already.
    """

    def __init__(self, engine: Engine, migrate: bool = True) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        table = RecordEntry.__table__
        self._group_commit = GroupCommitter(engine, table, "record_id", self._add_record_alone)  # type: ignore[arg-type]
        if migrate:
            upgrade_database(engine)

    @classmethod
    def from_url(cls, database_url: str, migrate: bool = True) -> MetadataStore:
        return cls(create_metadata_engine(database_url), migrate=migrate)

    def add_device(
        self, device_id: str, name: str, token_sha256: str, enrolled_at: float, person_id: str
    ) -> None:
        """Enrol a device for a person (created on their first device)."""
        for attempt in (1, 2):
            try:
                with self._sessions.begin() as session:
                    ensure_person(session, person_id, enrolled_at)
                    session.add(
                        DeviceEntry(
                            device_id=device_id,
                            name=name,
                            token_sha256=token_sha256,
                            enrolled_at=enrolled_at,
                            person_id=person_id,
                        )
                    )
                return
            except IntegrityError:
                # Another worker enrolled the same person's first device at the same moment: the person
                # exists now, so the second try only adds the device.
                if attempt == 2:
                    raise

    def device_for_token(self, token_sha256: str) -> str | None:
        with self._sessions() as session:
            return session.scalar(
                select(DeviceEntry.device_id).where(DeviceEntry.token_sha256 == token_sha256)
            )

    def revoke_device(self, device_id: str, new_token_sha256: str, audit: AuditRecord) -> bool:
        """Replace a device's token digest (its token is refused from now on) and log it; False if no
        such device. The new digest is of a token nobody has; ``revoked_at`` only tells the fleet page."""
        with self._sessions.begin() as session:
            changed = session.execute(  # type: ignore[attr-defined]
                update(DeviceEntry)
                .where(DeviceEntry.device_id == device_id)
                .values(token_sha256=new_token_sha256, revoked_at=audit.at)
            ).rowcount
            if changed:
                session.add(_audit_entry(audit))
        return bool(changed)

    def devices(self) -> list[tuple[str, str, float]]:
        """Every enrolled device as (device id, name, enrolled at), oldest first."""
        with self._sessions() as session:
            rows = session.execute(
                select(DeviceEntry.device_id, DeviceEntry.name, DeviceEntry.enrolled_at).order_by(
                    DeviceEntry.enrolled_at
                )
            )
            return [(device_id, name, enrolled_at) for device_id, name, enrolled_at in rows]

    def person_of(self, device_id: str) -> str | None:
        with self.engine.connect() as connection:  # Core: once per record stored
            return connection.execute(_PERSON_OF_DEVICE, {"device_id": device_id}).scalar_one_or_none()

    def people(self) -> list[tuple[str, float, int, int]]:
        """Every person: (person id, created at, devices, records), oldest first."""
        devices = (
            select(DeviceEntry.person_id, func.count().label("n")).group_by(DeviceEntry.person_id).subquery()
        )
        records = (
            select(RecordEntry.person_id, func.count().label("n")).group_by(RecordEntry.person_id).subquery()
        )
        query = (
            select(
                PersonEntry.person_id,
                PersonEntry.created_at,
                func.coalesce(devices.c.n, 0),
                func.coalesce(records.c.n, 0),
            )
            .outerjoin(devices, devices.c.person_id == PersonEntry.person_id)
            .outerjoin(records, records.c.person_id == PersonEntry.person_id)
            .order_by(PersonEntry.created_at, PersonEntry.person_id)
        )
        with self._sessions() as session:
            return [(str(a), float(b), int(c), int(d)) for a, b, c, d in session.execute(query)]

    def get_record(self, record_id: str) -> StoredRecord | None:
        # Core, not the ORM: a dataset build looks up every frame by id, and the ORM's identity map
        # and session setup cost more than the query itself.
        with self.engine.connect() as connection:
            row = connection.execute(_RECORD_BY_ID, {"record_id": record_id}).one_or_none()
        return None if row is None else StoredRecord(**row._asdict())

    def get_records(self, record_ids: Iterable[str]) -> list[StoredRecord]:
        """The rows of these ids that exist, in no particular order."""
        ids = list(record_ids)
        rows: list[StoredRecord] = []
        table = RecordEntry.__table__
        with self.engine.connect() as connection:
            for start in range(0, len(ids), DELETE_CHUNK_ROWS):
                query = select(table).where(table.c.record_id.in_(ids[start : start + DELETE_CHUNK_ROWS]))
                rows += [StoredRecord(**row._asdict()) for row in connection.execute(query)]
        return rows

    def add_record(self, record: StoredRecord) -> bool:
        """Insert a row; False (and nothing changed) if a row with that record id exists already.
        Rows added at the same time by several threads are committed together (group_commit.py)."""
        return self._group_commit.add(dict(record.__dict__), record)

    def _add_record_alone(self, record: StoredRecord) -> bool:
        try:
            with self._sessions.begin() as session:
                session.add(RecordEntry(**record.__dict__))
        except IntegrityError:
            return False
        return True

    def records(
        self, kind: str | None = None, device_id: str | None = None, session_id: str | None = None
    ) -> Iterator[StoredRecord]:
        """Rows in reading order: by device, session, then seq (batches) or time (frames)."""
        query = select(RecordEntry)
        if kind is not None:
            query = query.where(RecordEntry.kind == kind)
        if device_id is not None:
            query = query.where(RecordEntry.device_id == device_id)
        if session_id is not None:
            query = query.where(RecordEntry.session_id == session_id)
        query = query.order_by(
            RecordEntry.device_id,
            RecordEntry.session_id,
            RecordEntry.seq,
            RecordEntry.t,
            RecordEntry.record_id,
        )
        with self._sessions() as session:
            for entry in session.scalars(query.execution_options(yield_per=1000)):
                yield StoredRecord.from_entry(entry)

    def sessions(self, received_by: float | None = None) -> list[SessionRows]:
        """Every (device, session) with its counts of batches and frames (only those received by
        ``received_by``, when given)."""
        query = select(
            RecordEntry.device_id,
            RecordEntry.session_id,
            func.min(RecordEntry.person_id),
            func.count().filter(RecordEntry.kind == "batch"),
            func.count().filter(RecordEntry.kind == "frame"),
        )
        if received_by is not None:
            query = query.where(RecordEntry.received_at <= received_by)
        query = query.group_by(RecordEntry.device_id, RecordEntry.session_id).order_by(
            RecordEntry.device_id, RecordEntry.session_id
        )
        with self._sessions() as session:
            return [
                SessionRows(str(device), str(sid), str(person), int(batches), int(frames))
                for device, sid, person, batches, frames in session.execute(query)
            ]

    def record_count(self, kind: str | None = None) -> int:
        query = select(func.count()).select_from(RecordEntry)
        if kind is not None:
            query = query.where(RecordEntry.kind == kind)
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    def device_count(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(DeviceEntry)) or 0)

    def delete_records_where(self, condition: Any) -> DeletedRows:
        """Delete every record row matching ``condition`` (a SQLAlchemy clause on RecordEntry), a chunk
        per transaction; returns their blob keys, to be deleted after the rows."""
        blob_keys: list[str] = []
        sessions: set[tuple[str, str]] = set()
        while True:
            with self._sessions.begin() as session:
                query = (
                    select(
                        RecordEntry.record_id,
                        RecordEntry.blob_key,
                        RecordEntry.device_id,
                        RecordEntry.session_id,
                    )
                    .where(condition)
                    .limit(DELETE_CHUNK_ROWS)
                )
                chunk = session.execute(query).all()
                if not chunk:
                    return DeletedRows(blob_keys, sessions)
                session.execute(
                    delete(RecordEntry).where(RecordEntry.record_id.in_([row[0] for row in chunk]))
                )
            blob_keys += [row[1] for row in chunk]
            sessions |= {(row[2], row[3]) for row in chunk}

    def take_lease(self, name: str, holder: str, now: float, seconds: float) -> bool:
        """True if ``holder`` now holds the lease ``name`` until ``now + seconds`` (it was free or had
        run out); False if someone else holds it. One conditional write: safe across processes."""
        with self._sessions.begin() as session:
            taken = session.execute(
                update(LeaseEntry)
                .where(LeaseEntry.name == name, LeaseEntry.until <= now)
                .values(holder=holder, until=now + seconds)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return True
        try:
            with self._sessions.begin() as session:
                if session.get(LeaseEntry, name) is not None:
                    return False
                session.add(LeaseEntry(name=name, holder=holder, until=now + seconds))
        except IntegrityError:
            return False  # another process created it first
        return True

    def close(self) -> None:
        self.engine.dispose()
