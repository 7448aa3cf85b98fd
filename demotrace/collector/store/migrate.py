"""Bring a collector database to the schema this code expects, with the Alembic revisions in
``migrations/versions/``: on every collector start, and by ``demotrace server migrate``.

A database made by the collector's old ``create_all`` (tables, no ``alembic_version``) is recognised and
stamped with the first revision before upgrading, so its data comes along. Several collectors starting at
once on one PostgreSQL database take turns (an advisory lock); on SQLite the database's own write lock
does the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS_FOLDER = Path(__file__).with_name("migrations")
FIRST_REVISION = "0001_initial"
# Any number, the same in every collector: the key of the PostgreSQL advisory lock migrations hold.
_PG_MIGRATION_LOCK = 0x64656D6F  # "demo"


class SchemaError(RuntimeError):
    """The database is not at the schema this collector needs (or is newer than it knows)."""


@dataclass(frozen=True)
class MigrationResult:
    before: str | None  # None: the database was empty (or made by create_all, then see stamped)
    after: str
    stamped: bool  # a create_all database was recognised and stamped with the first revision

    @property
    def changed(self) -> bool:
        return self.stamped or self.before != self.after


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_FOLDER))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _made_by_create_all(connection: Connection) -> bool:
    return current_revision(connection) is None and inspect(connection).has_table("devices")


def upgrade_database(engine: Engine) -> MigrationResult:
    """Upgrade the database behind ``engine`` to the head revision; a no-op when it is there already."""
    head = head_revision()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode copies tables that others point to; the copy must not trip the foreign keys.
            # (A PRAGMA only takes effect outside a transaction: it is the first thing on this connection.)
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # one migrator at a time, the others wait
        else:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        before = current_revision(connection)
        stamped = _made_by_create_all(connection)
        _refuse_unknown(before)
        if before != head:
            config = _config(connection)
            if stamped:
                command.stamp(config, FIRST_REVISION)
            command.upgrade(config, "head")
        connection.commit()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    return MigrationResult(before=before, after=head, stamped=stamped)


def _refuse_unknown(revision: str | None) -> None:
    if revision is None:
        return
    script = ScriptDirectory.from_config(_config())
    try:
        script.get_revision(revision)
    except Exception as error:  # alembic raises a family of errors for unknown ids
        raise SchemaError(
            f"the database is at revision {revision}, which this collector does not know: "
            "it was migrated by a newer version; run that version (or restore a backup)"
        ) from error


def check_at_head(engine: Engine) -> None:
    """Raise SchemaError unless the database is at the head revision (for workers that must not
    migrate themselves: the process that started them did)."""
    head = head_revision()
    with engine.connect() as connection:
        current = current_revision(connection)
    if current != head:
        raise SchemaError(
            f"the database is at revision {current or 'none'}, this collector needs {head}: "
            "run `demotrace server migrate` (or start the collector once without workers)"
        )
