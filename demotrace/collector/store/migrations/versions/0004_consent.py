"""Notice acknowledgements: which recording notice a person accepted on which device, and when.

Revision ID: 0004_consent
Revises: 0003_accounts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_consent"
down_revision = "0003_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notice_acks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("notice_version", sa.Integer(), nullable=False),
        sa.Column("accepted_at", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_notice_acks_device_id", "notice_acks", ["device_id"])
    op.create_index("ix_notice_acks_person_id", "notice_acks", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_notice_acks_person_id", table_name="notice_acks")
    op.drop_index("ix_notice_acks_device_id", table_name="notice_acks")
    op.drop_table("notice_acks")
