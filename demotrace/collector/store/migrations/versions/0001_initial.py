"""The schema the collector made with ``create_all`` before it had migrations.

A database made that way has no ``alembic_version`` table: migrate.py recognises it by its tables and
stamps it with this revision, then upgrades it like any other.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("enrolled_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_devices_token_sha256", "devices", ["token_sha256"], unique=True)
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("t", sa.Float(), nullable=True),
        sa.Column("wall", sa.Float(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("blob_key", sa.String(512), nullable=False),
        sa.Column("blob_size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
    )
    op.create_index("records_by_session", "records", ["device_id", "session_id", "seq"])
    op.create_table(
        "exemption_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("delete_collected", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("decided_by", sa.String(256), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_exemption_requests_device_id", "exemption_requests", ["device_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_log_device_id", "audit_log", ["device_id"])
    op.create_table(
        "fleet_policy",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    for table in ("fleet_policy", "audit_log", "exemption_requests", "records", "devices"):
        op.drop_table(table)
