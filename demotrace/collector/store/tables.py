"""The collector's SQL schema (SQLAlchemy 2 ORM tables): one definition, which the Alembic migrations in
``migrations/versions/`` must reach at head (a test compares the two).

A person is a pseudonymous id (from enrolment or the portal), never a name: each device is enrolled for
one person, and exemptions, deletions and the data keys that seal the blobs belong to the person.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

EXEMPTION_REQUESTED = "requested"
EXEMPTION_APPROVED = "approved"
EXEMPTION_DENIED = "denied"


class Base(DeclarativeBase):
    pass


class PersonEntry(Base):
    __tablename__ = "people"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class DeviceEntry(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    # Only a SHA-256 of the bearer token is kept: a leaked database does not let anyone upload.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    enrolled_at: Mapped[float] = mapped_column(Float)
    person_id: Mapped[str] = mapped_column(String(64), ForeignKey("people.person_id"), index=True)
    # Health, as the device last reported it (None until it reports), and when it was revoked.
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spool_backlog: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_report_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


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
    # Denormalised from the device: deletions and the blob's data key go by person without a join.
    person_id: Mapped[str] = mapped_column(String(64), index=True)

    __table_args__ = (
        Index("records_by_session", "device_id", "session_id", "seq"),
        Index("records_by_received_at", "received_at"),
    )


class DataKeyEntry(Base):
    """A person's data key, wrapped (sealed) by the collector's master key. Deleting the row is the
    crypto-shredding of that person's blobs, wherever copies of them are."""

    __tablename__ = "data_keys"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))  # which master key wrapped it
    created_at: Mapped[float] = mapped_column(Float)


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
    # The exemption covers every device of this person, whichever device asked.
    person_id: Mapped[str] = mapped_column(String(64), index=True)


class AuditEntry(Base):
    """Append-only: the store has no method that updates or deletes a row."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(256))  # "admin:<name>", "device:<id>" or "collector"
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


class PauseRequestEntry(Base):
    """A pause (or resume) asked for on the portal, for every device of a person: each device learns it
    on its next policy sync and answers with the pause event it caused (PauseEventEntry.request_id)."""

    __tablename__ = "pause_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(16))  # "pause" or "resume"
    requested_at: Mapped[float] = mapped_column(Float)  # collector clock
    paused_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # collector clock; pauses only


class PauseEventEntry(Base):
    """A pause, resume or expiry as a device reports it: times only, never what was on screen."""

    __tablename__ = "pause_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "paused", "resumed", "expired"
    at: Mapped[float] = mapped_column(Float)  # device clock
    paused_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # device clock
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the portal request it applied
    received_at: Mapped[float] = mapped_column(Float)  # collector clock


class LeaseEntry(Base):
    """Who runs a periodic job until when: several collector workers (or hosts) share one database, and
    a conditional update of this row lets exactly one of them run each round."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    until: Mapped[float] = mapped_column(Float)


class AccountEntry(Base):
    """A portal account. Only an argon2id hash of the password is kept; an employee account is tied to
    the pseudonymous person its devices are enrolled for."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    role: Mapped[str] = mapped_column(String(16))  # employee, admin or data_engineer
    password_hash: Mapped[str] = mapped_column(String(256))
    person_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("people.person_id"), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class WebSessionEntry(Base):
    """A signed-in browser. The cookie holds a random id; only its SHA-256 is stored, so a leaked
    database opens no session."""

    __tablename__ = "web_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.account_id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class NoticeAckEntry(Base):
    """A person's acceptance, on one device, of the recording notice for a policy (append-only: a new
    acceptance is a new row; the newest per device is the one in force)."""

    __tablename__ = "notice_acks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.device_id"), index=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    digest: Mapped[str] = mapped_column(String(64))  # notice.notice_digest of the policy accepted
    notice_version: Mapped[int] = mapped_column(Integer)
    accepted_at: Mapped[float] = mapped_column(Float)  # the device's clock
    received_at: Mapped[float] = mapped_column(Float)  # the collector's
