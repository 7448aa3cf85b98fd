"""Alembic migrations of the collector's database (see store/migrate.py for how they are run)."""
