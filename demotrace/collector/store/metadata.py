"""Metadata of enrolled devices and received records, in SQL (SQLAlchemy 2).

One setting picks the backend: a database URL. SQLite in the data folder by default
(``sqlite:///DATA/collector.db``); a PostgreSQL URL (``postgresql+psycopg://...``) for fleets.
The schema is created on open (``create_all``); migrations will move to Alembic once the schema changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

DATABASE_FILE = "collector.db"


class Base(DeclarativeBase):
    pass


class DeviceEntry(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    # Only a SHA-256 of the bearer token is kept: a leaked database does not let anyone upload.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    enrolled_at: Mapped[float] = mapped_column(Float)


class RecordEntry(Base):
    __tablename__ = "records"

    record_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "batch" or "frame"
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.device_id"))
    session_id: Mapped[str] = mapped_column(String(256))
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # batches only
    t: Mapped[float | None] = mapped_column(Float, nullable=True)  # None for a batch without events
    wall: Mapped[float | None] = mapped_column(Float, nullable=True)
    size: Mapped[int] = mapped_column(Integer)  # MessagePack bytes of the stored record
    blob_key: Mapped[str] = mapped_column(String(512))
    blob_size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored MessagePack: tells a re-send from a clash
    received_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("records_by_session", "device_id", "session_id", "seq"),)


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
        )


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
    cursor.close()


def create_metadata_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # Requests run on a thread pool; the pool hands each thread its own checked-out connection.
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True)


class MetadataStore:
    """Devices and record rows. Thread-safe: every call uses its own short database session."""

    def __init__(self, engine: Engine, create_schema: bool = True) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        if create_schema:
            Base.metadata.create_all(engine)

    @classmethod
    def from_url(cls, database_url: str, create_schema: bool = True) -> MetadataStore:
        return cls(create_metadata_engine(database_url), create_schema=create_schema)

    def add_device(self, device_id: str, name: str, token_sha256: str, enrolled_at: float) -> None:
        with self._sessions.begin() as session:
            session.add(
                DeviceEntry(
                    device_id=device_id, name=name, token_sha256=token_sha256, enrolled_at=enrolled_at
                )
            )

    def device_for_token(self, token_sha256: str) -> str | None:
        with self._sessions() as session:
            return session.scalar(
                select(DeviceEntry.device_id).where(DeviceEntry.token_sha256 == token_sha256)
            )

    def get_record(self, record_id: str) -> StoredRecord | None:
        with self._sessions() as session:
            entry = session.get(RecordEntry, record_id)
            return None if entry is None else StoredRecord.from_entry(entry)

    def add_record(self, record: StoredRecord) -> bool:
        """Insert a row; False (and nothing changed) if a row with that record id exists already."""
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

    def record_count(self, kind: str | None = None) -> int:
        query = select(func.count()).select_from(RecordEntry)
        if kind is not None:
            query = query.where(RecordEntry.kind == kind)
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    def device_count(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(DeviceEntry)) or 0)

    def close(self) -> None:
        self.engine.dispose()
