"""Schema migrations (Alembic) on real SQLite and PostgreSQL: a database made by the old ``create_all``,
with data in it, is upgraded on start and by ``demotrace server migrate``, and nothing is lost."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import sqlalchemy
import zstandard
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from legacy_schema import audit_log, devices, exemption_requests, fleet_policy, legacy, records
from test_collector import make_batch, make_frame, owned, packed
from typer.testing import CliRunner

from demotrace.cli.main import app as cli_app
from demotrace.collector.app import create_app
from demotrace.collector.reader import CollectorReader
from demotrace.collector.server import ServerThread
from demotrace.collector.store import LocalBlobStore, MetadataStore, default_database_url
from demotrace.collector.store.keyring import is_sealed
from demotrace.collector.store.migrate import SchemaError, head_revision, upgrade_database
from demotrace.collector.store.tables import Base
from demotrace.model import Batch, Record, encode_record
from demotrace.protocol import record_id_of

ADMIN = "admin-token-for-migration-tests"
POLICY = 'mode = "allowlist"\nallow_apps = ["xterm"]\nretention_days = 90\n'
TOKENS = {"dev-a": "token-of-device-a-" + "x" * 30, "dev-b": "token-of-device-b-" + "y" * 30}


def make_legacy_collector(database_url: str, data_dir: Path) -> list[Record]:
    """A collector as the code before migrations left it: tables from create_all, two devices (one of
    them exempt), records with their (unsealed) blobs, an audit entry and a fleet policy."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(database_url)
    legacy.create_all(engine)
    blobs = LocalBlobStore(data_dir / "blobs")
    stored: list[Record] = []
    with engine.begin() as connection:
        for device_id, token in TOKENS.items():
            connection.execute(
                devices.insert().values(
                    device_id=device_id,
                    name=f"laptop {device_id}",
                    token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                    enrolled_at=1000.0,
                )
            )
        for record in (make_batch("old", 0), make_frame("old", 0), make_batch("old", 1)):
            mine = owned(record, "dev-a")
            plain = encode_record(mine)
            digest = hashlib.sha256(plain).hexdigest()
            kind = "batch" if isinstance(mine, Batch) else "frame"
            key = f"{kind}/dev-a/{record_id_of(mine)}.{digest[:16]}.msgpack.zst"
            blob = zstandard.ZstdCompressor(level=3).compress(plain)
            blobs.put(key, blob)
            connection.execute(
                records.insert().values(
                    record_id=record_id_of(mine),
                    kind=kind,
                    device_id="dev-a",
                    session_id=mine.session_id,
                    seq=mine.seq if isinstance(mine, Batch) else None,
                    t=100.0,
                    wall=1e9,
                    size=len(plain),
                    blob_key=key,
                    blob_size=len(blob),
                    sha256=digest,
                    received_at=2000.0,
                )
            )
            stored.append(mine)
        connection.execute(
            exemption_requests.insert().values(
                device_id="dev-b",
                reason="on leave",
                delete_collected=False,
                status="approved",
                requested_at=3000.0,
                decided_by="priya",
                decided_at=3100.0,
            )
        )
        connection.execute(
            audit_log.insert().values(
                at=3100.0, actor="admin:priya", action="exemption_approved", device_id="dev-b", details="{}"
            )
        )
        connection.execute(
            fleet_policy.insert().values(id=1, text=POLICY, updated_at=50.0, updated_by="priya")
        )
    engine.dispose()
    return stored


def revision_of(database_url: str) -> str | None:
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_a_create_all_database_with_data_is_upgraded_on_start_and_keeps_it(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    old = make_legacy_collector(database_url, data_dir)
    assert revision_of(database_url) is None

    app = create_app(data_dir, database_url=database_url, admin_token=ADMIN, retention_interval_s=None)
    assert revision_of(database_url) == head_revision()
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        # Tokens issued before the upgrade still work; the exemption still holds for its device.
        new = make_frame("new", 0)
        put = {"Content-Type": "application/x-demotrace-record"}
        answer = client.put(
            f"/v1/records/{new.frame_id}",
            content=packed(new),
            headers={**put, "Authorization": f"Bearer {TOKENS['dev-a']}"},
        )
        assert answer.status_code == 201, answer.text
        refused = client.put(
            f"/v1/records/{new.frame_id}x",
            content=packed(new),
            headers={**put, "Authorization": f"Bearer {TOKENS['dev-b']}"},
        )
        assert refused.status_code == 403 and refused.json()["error"] == "exempt"
        policy = client.get("/v1/admin/policy", headers=admin).json()
        assert policy["policy"] == POLICY and policy["policy_source"] == "fleet"
        audit = client.get("/v1/admin/audit", headers=admin).json()
        assert audit[0]["action"] == "exemption_approved" and audit[0]["at"] == 3100.0
        exemptions = client.get("/v1/admin/exemptions", headers=admin).json()
        assert [(e["device_id"], e["person_id"], e["status"]) for e in exemptions] == [
            ("dev-b", "dev-b", "approved")
        ]
        people = client.get("/v1/admin/people", headers=admin).json()
        assert {p["person_id"]: p["devices"] for p in people} == {"dev-a": 1, "dev-b": 1}
        assert all("records" not in p for p in people)  # no per-person activity figure (cohorts.py)

    with CollectorReader(data_dir, database_url) as reader:
        assert list(reader.iter_batches()) == [r for r in old if isinstance(r, Batch)]
        frames = {frame.frame_id: frame for frame in reader.iter_frames()}
        rows = {row.record_id: row for row in reader.rows()}
    assert frames["old-f0"] == old[1]
    assert frames["new-f0"] == owned(new, "dev-a")
    blobs = LocalBlobStore(data_dir / "blobs")
    assert not is_sealed(blobs.get(rows["old-f0"].blob_key) or b"")  # old blobs are read as they were
    assert is_sealed(blobs.get(rows["new-f0"].blob_key) or b"")  # new ones are sealed
    assert {row.person_id for row in rows.values()} == {"dev-a"}


def test_server_migrate_upgrades_once_then_says_it_is_current(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_legacy_collector(database_url, data_dir)
    runner = CliRunner()
    args = ["server", "migrate", "--data", str(data_dir), "--database-url", database_url]
    first = runner.invoke(cli_app, args)
    assert first.exit_code == 0, first.output
    assert f"upgraded from a database made before migrations to {head_revision()}" in " ".join(
        first.output.split()
    )
    again = runner.invoke(cli_app, args)
    assert again.exit_code == 0 and f"already at {head_revision()}" in again.output
    with CollectorReader(data_dir, database_url) as reader:
        assert len(list(reader.rows())) == 3


def test_the_migrations_reach_exactly_the_tables_the_code_declares(database_url: str) -> None:
    engine = sqlalchemy.create_engine(database_url)
    try:
        result = upgrade_database(engine)
        assert (result.before, result.after, result.stamped) == (None, head_revision(), False)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert not upgrade_database(engine).changed
    finally:
        engine.dispose()


def test_a_database_migrated_by_a_newer_version_is_refused(tmp_path: Path) -> None:
    url = default_database_url(tmp_path)
    MetadataStore.from_url(url).close()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '0099_future'"))
    with pytest.raises(SchemaError, match=r"0099_future.*newer version"):
        upgrade_database(engine)
    engine.dispose()


def test_a_worker_does_not_migrate_and_refuses_an_old_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_legacy_collector(default_database_url(data_dir), data_dir)
    with pytest.raises(SchemaError, match="demotrace server migrate"):
        create_app(data_dir, migrate=False)
    assert revision_of(default_database_url(data_dir)) is None
