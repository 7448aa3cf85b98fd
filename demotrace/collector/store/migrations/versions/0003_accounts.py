"""Portal accounts and their browser sessions; the health devices report, and when one was revoked.

Revision ID: 0003_accounts
Revises: 0002_people_keys_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_accounts"
down_revision = "0002_people_keys_leases"
branch_labels = None
depends_on = None


_DEVICE_HEALTH = (
    ("agent_version", sa.String(64)),
    ("spool_backlog", sa.BigInteger()),
    ("last_error", sa.String(512)),
    ("last_report_at", sa.Float()),
    ("revoked_at", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        for name, kind in _DEVICE_HEALTH:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("person_id", sa.String(64), sa.ForeignKey("people.person_id"), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_accounts_name", "accounts", ["name"], unique=True)
    op.create_table(
        "web_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_web_sessions_account_id", "web_sessions", ["account_id"])
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.drop_table("accounts")
    with op.batch_alter_table("devices") as batch:
        for name, _kind in _DEVICE_HEALTH:
            batch.drop_column(name)
