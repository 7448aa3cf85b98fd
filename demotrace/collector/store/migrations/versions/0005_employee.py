"""The employee portal: pauses asked for on the portal, and the pauses devices report.

Revision ID: 0005_employee
Revises: 0004_consent
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_employee"
down_revision = "0004_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pause_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=True),
    )
    op.create_index("ix_pause_requests_person_id", "pause_requests", ["person_id"])
    op.create_table(
        "pause_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_pause_events_device_id", "pause_events", ["device_id"])
    op.create_index("ix_pause_events_person_id", "pause_events", ["person_id"])


def downgrade() -> None:
    op.drop_table("pause_events")
    op.drop_table("pause_requests")
