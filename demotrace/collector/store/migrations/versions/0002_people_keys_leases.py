"""People, data keys and leases: devices, records and exemptions belong to a person; each person's blobs
are sealed with a data key of their own; periodic jobs take a lease.

Every device enrolled before this revision becomes a person of its own (person id = device id), so
nothing it did changes meaning: its exemptions still cover exactly that device.

Revision ID: 0002_people_keys_leases
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_people_keys_leases"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _person_of_device(table: str) -> str:
    return (
        f"UPDATE {table} SET person_id = "
        f"(SELECT devices.person_id FROM devices WHERE devices.device_id = {table}.device_id)"
    )


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.execute("INSERT INTO people (person_id, created_at) SELECT device_id, enrolled_at FROM devices")

    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("person_id", sa.String(64), nullable=True))
    op.execute("UPDATE devices SET person_id = device_id")
    with op.batch_alter_table("devices") as batch:
        batch.alter_column("person_id", existing_type=sa.String(64), nullable=False)
        batch.create_foreign_key("fk_devices_person_id_people", "people", ["person_id"], ["person_id"])
        batch.create_index("ix_devices_person_id", ["person_id"])

    for table in ("records", "exemption_requests"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("person_id", sa.String(64), nullable=True))
        op.execute(_person_of_device(table))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("person_id", existing_type=sa.String(64), nullable=False)
            batch.create_index(f"ix_{table}_person_id", ["person_id"])
    op.create_index("records_by_received_at", "records", ["received_at"])

    op.create_table(
        "data_keys",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("data_keys")
    op.drop_index("records_by_received_at", "records")
    for table in ("exemption_requests", "records", "devices"):
        with op.batch_alter_table(table) as batch:
            if table == "devices":
                batch.drop_constraint("fk_devices_person_id_people", type_="foreignkey")
            batch.drop_index(f"ix_{table}_person_id")
            batch.drop_column("person_id")
    op.drop_table("people")
