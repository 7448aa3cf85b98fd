"""The collector's schema as ``create_all`` made it before migrations existed (commit 12b9447), frozen
here as SQLAlchemy Core tables so tests can make such a database, fill it, and upgrade it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

legacy = MetaData()

devices = Table(
    "devices",
    legacy,
    Column("device_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True, index=True),
    Column("enrolled_at", Float, nullable=False),
)
records = Table(
    "records",
    legacy,
    Column("record_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("device_id", String(64), ForeignKey("devices.device_id"), nullable=False),
    Column("session_id", String(256), nullable=False),
    Column("seq", BigInteger, nullable=True),
    Column("t", Float, nullable=True),
    Column("wall", Float, nullable=True),
    Column("size", Integer, nullable=False),
    Column("blob_key", String(512), nullable=False),
    Column("blob_size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received_at", Float, nullable=False),
    Index("records_by_session", "device_id", "session_id", "seq"),
)
exemption_requests = Table(
    "exemption_requests",
    legacy,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), ForeignKey("devices.device_id"), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("delete_collected", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("decided_by", String(256), nullable=True),
    Column("decided_at", Float, nullable=True),
)
audit_log = Table(
    "audit_log",
    legacy,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("device_id", String(64), nullable=True, index=True),
    Column("details", Text, nullable=False),
)
fleet_policy = Table(
    "fleet_policy",
    legacy,
    Column("id", Integer, primary_key=True),
    Column("text", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(256), nullable=False),
)
