"""Metadata of enrolled devices and received records, in SQL (SQLAlchemy 2).

One setting picks the backend: a database URL. SQLite in the data folder by default
(``sqlite:///DATA/collector.db``); a PostgreSQL URL (``postgresql+psycopg://...``) for fleets.
The schema is created on open (``create_all``); migrations will move to Alembic once the schema changes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
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

    def revoke_device(self, device_id: str, new_token_sha256: str, audit: AuditRecord) -> bool:
        """Replace a device's token digest (its token is refused from now on) and log it; False if no
        such device. The new digest is of a token nobody has: revoking needs no column of its own."""
        with self._sessions.begin() as session:
            changed = session.execute(  # type: ignore[attr-defined]
                update(DeviceEntry)
                .where(DeviceEntry.device_id == device_id)
                .values(token_sha256=new_token_sha256)
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


# --- exemptions, the fleet policy and the audit log ---------------------------------------------------

EXEMPTION_REQUESTED = "requested"
EXEMPTION_APPROVED = "approved"
EXEMPTION_DENIED = "denied"


class ExemptionEntry(Base):
    __tablename__ = "exemption_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.device_id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    delete_collected: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))  # requested, approved, denied
    requested_at: Mapped[float] = mapped_column(Float)
    decided_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    decided_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditEntry(Base):
    """Append-only: the store has no method that updates or deletes a row."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(256))  # "admin:<name>" or "device:<id>"
    action: Mapped[str] = mapped_column(String(64))
    # No foreign key: the trail of a device must outlive anything deleted about it.
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    details: Mapped[str] = mapped_column(Text)  # JSON object


class FleetPolicyEntry(Base):
    __tablename__ = "fleet_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1: one policy per collector
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(256))


@dataclass(frozen=True)
class ExemptionRequest:
    id: int
    device_id: str
    reason: str
    delete_collected: bool
    status: str
    requested_at: float
    decided_by: str | None
    decided_at: float | None

    @staticmethod
    def from_entry(entry: ExemptionEntry) -> ExemptionRequest:
        return ExemptionRequest(
            id=entry.id,
            device_id=entry.device_id,
            reason=entry.reason,
            delete_collected=entry.delete_collected,
            status=entry.status,
            requested_at=entry.requested_at,
            decided_by=entry.decided_by,
            decided_at=entry.decided_at,
        )


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    device_id: str | None
    details: str


@dataclass(frozen=True)
class FleetPolicy:
    text: str
    updated_at: float
    updated_by: str


class ExemptionStore:
    """Exemption requests, the fleet policy and the audit log, on the MetadataStore's database."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def add_request(
        self, device_id: str, reason: str, delete_collected: bool, at: float, audit: AuditRecord
    ) -> ExemptionRequest:
        """Store a request and its audit entry in one transaction."""
        with self._sessions.begin() as session:
            entry = ExemptionEntry(
                device_id=device_id,
                reason=reason,
                delete_collected=delete_collected,
                status=EXEMPTION_REQUESTED,
                requested_at=at,
            )
            session.add(entry)
            session.flush()
            session.add(_audit_entry(audit, details_extra={"request_id": entry.id}))
            return ExemptionRequest.from_entry(entry)

    def get_request(self, request_id: int) -> ExemptionRequest | None:
        with self._sessions() as session:
            entry = session.get(ExemptionEntry, request_id)
            return None if entry is None else ExemptionRequest.from_entry(entry)

    def requests(self, status: str | None = None, device_id: str | None = None) -> list[ExemptionRequest]:
        query = select(ExemptionEntry).order_by(ExemptionEntry.id)
        if status is not None:
            query = query.where(ExemptionEntry.status == status)
        if device_id is not None:
            query = query.where(ExemptionEntry.device_id == device_id)
        with self._sessions() as session:
            return [ExemptionRequest.from_entry(entry) for entry in session.scalars(query)]

    def is_exempt(self, device_id: str) -> bool:
        query = select(ExemptionEntry.id).where(
            ExemptionEntry.device_id == device_id, ExemptionEntry.status == EXEMPTION_APPROVED
        )
        with self._sessions() as session:
            return session.scalar(query.limit(1)) is not None

    def decide(
        self, request_id: int, approve: bool, decided_by: str, at: float, audit: AuditRecord
    ) -> tuple[ExemptionRequest, list[str]] | None:
        """Approve or deny a pending request, with its audit entry, in one transaction.

        An approval with ``delete_collected`` also deletes the device's record rows in that transaction
        and returns their blob keys (the caller deletes the blobs). None if the request is not pending.
        """
        status = EXEMPTION_APPROVED if approve else EXEMPTION_DENIED
        with self._sessions.begin() as session:
            # Conditional update: two admins deciding at once cannot both win.
            changed = session.execute(
                update(ExemptionEntry)
                .where(ExemptionEntry.id == request_id, ExemptionEntry.status == EXEMPTION_REQUESTED)
                .values(status=status, decided_by=decided_by, decided_at=at)
            )
            if getattr(changed, "rowcount", 0) != 1:
                return None
            entry = session.get(ExemptionEntry, request_id)
            assert entry is not None
            session.refresh(entry)
            blob_keys: list[str] = []
            if approve and entry.delete_collected:
                blob_keys = _delete_records_of(session, entry.device_id)
            session.add(_audit_entry(audit, details_extra={"request_id": request_id}))
            return ExemptionRequest.from_entry(entry), blob_keys

    def delete_device_records(self, device_id: str) -> list[str]:
        """Delete every record row of a device; returns the blob keys they pointed to."""
        with self._sessions.begin() as session:
            return _delete_records_of(session, device_id)

    def delete_record(self, record_id: str, device_id: str) -> str | None:
        """Delete one record row of a device; returns its blob key (None if there was no such row)."""
        with self._sessions.begin() as session:
            entry = session.get(RecordEntry, record_id)
            if entry is None or entry.device_id != device_id:
                return None
            blob_key = entry.blob_key
            session.delete(entry)
            return blob_key

    def append_audit(self, record: AuditRecord) -> None:
        with self._sessions.begin() as session:
            session.add(_audit_entry(record))

    def audit(self, limit: int = 1000, device_id: str | None = None) -> list[AuditRecord]:
        """The newest ``limit`` entries, oldest first."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if device_id is not None:
            query = query.where(AuditEntry.device_id == device_id)
        with self._sessions() as session:
            rows = [
                AuditRecord(e.id, e.at, e.actor, e.action, e.device_id, e.details)
                for e in session.scalars(query)
            ]
        return rows[::-1]

    def set_fleet_policy(self, text: str, updated_by: str, at: float, audit: AuditRecord) -> None:
        with self._sessions.begin() as session:
            session.merge(FleetPolicyEntry(id=1, text=text, updated_at=at, updated_by=updated_by))
            session.add(_audit_entry(audit))

    def fleet_policy(self) -> FleetPolicy | None:
        with self._sessions() as session:
            entry = session.get(FleetPolicyEntry, 1)
            return None if entry is None else FleetPolicy(entry.text, entry.updated_at, entry.updated_by)


def _delete_records_of(session: Any, device_id: str) -> list[str]:
    blob_keys = list(session.scalars(select(RecordEntry.blob_key).where(RecordEntry.device_id == device_id)))
    session.execute(delete(RecordEntry).where(RecordEntry.device_id == device_id))
    return blob_keys


def _audit_entry(record: AuditRecord, details_extra: dict[str, Any] | None = None) -> AuditEntry:
    details = record.details
    if details_extra:
        merged = {**json.loads(details or "{}"), **details_extra}
        details = json.dumps(merged, sort_keys=True)
    return AuditEntry(
        at=record.at, actor=record.actor, action=record.action, device_id=record.device_id, details=details
    )
