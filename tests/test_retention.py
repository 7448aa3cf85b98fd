"""Collector-side retention: records received more than the fleet policy's ``retention_days`` ago are
deleted (rows, then blobs) on a schedule, with an audit entry; one worker sweeps per round."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
import sqlalchemy
from test_collector import make_batch, make_frame, packed
from test_uploader import wait_until

from demotrace.collector.app import create_app
from demotrace.collector.exemptions import render_policy_toml
from demotrace.collector.ingest import IngestService
from demotrace.collector.retention import DAY_SECONDS, RetentionService
from demotrace.collector.server import ServerThread
from demotrace.collector.store import KeyRing, LocalBlobStore, MasterKey, MetadataStore
from demotrace.collector.store.exemption_store import ExemptionStore
from demotrace.collector.upload_guard import audit_record
from demotrace.policy import DEFAULT_FLEET_POLICY
from demotrace.protocol import record_id_of

ADMIN = "admin-token-for-retention-tests"


@dataclass
class Stores:
    metadata: MetadataStore
    exemptions: ExemptionStore
    blobs: LocalBlobStore
    ingest: IngestService

    def age(self, session_id: str, days: float) -> None:
        """Pretend the collector received this session's records ``days`` ago."""
        with self.metadata.engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("UPDATE records SET received_at = :at WHERE session_id = :session"),
                {"at": time.time() - days * DAY_SECONDS, "session": session_id},
            )

    def set_retention(self, days: int) -> None:
        text = f'mode = "allowlist"\nretention_days = {days}\n'
        self.exemptions.set_fleet_policy(
            text, "priya", time.time(), audit_record(0, "admin:priya", "policy_set", None)
        )

    def sessions(self) -> list[str]:
        return sorted({row.session_id for row in self.metadata.records()})


@pytest.fixture
def stores(database_url: str, tmp_path: Path) -> Iterator[Stores]:
    metadata = MetadataStore.from_url(database_url)
    blobs = LocalBlobStore(tmp_path / "blobs")
    keyring = KeyRing(metadata.engine, MasterKey(bytes(range(32))))
    yield Stores(
        metadata, ExemptionStore(metadata.engine), blobs, IngestService(metadata, blobs, keyring=keyring)
    )
    metadata.close()


def upload_sessions(stores: Stores, *session_ids: str) -> None:
    device = stores.ingest.enroll("laptop").device_id
    for session_id in session_ids:
        for record in (make_batch(session_id, 0), make_batch(session_id, 1), make_frame(session_id, 0)):
            assert stores.ingest.store_record(device, record_id_of(record), packed(record)).created


def test_records_older_than_the_policy_are_deleted_with_an_audit_entry(stores: Stores) -> None:
    upload_sessions(stores, "old", "recent", "today")
    stores.set_retention(7)
    stores.age("old", 8)
    stores.age("recent", 6)
    kept_blobs = {row.blob_key for row in stores.metadata.records() if row.session_id != "old"}

    result = RetentionService(stores.metadata, stores.exemptions, stores.blobs).sweep()
    assert (result.retention_days, result.records, result.sessions, result.blobs) == (7, 3, 1, 3)
    assert stores.sessions() == ["recent", "today"]
    assert set(stores.blobs.keys()) == kept_blobs
    entry = stores.exemptions.audit()[-1]
    assert (entry.actor, entry.action) == ("collector", "retention_deleted")
    details = json.loads(entry.details)
    assert (details["records"], details["sessions"], details["retention_days"]) == (3, 1, 7)
    assert details["cutoff"] == pytest.approx(time.time() - 7 * DAY_SECONDS, abs=60)

    audit_before = len(stores.exemptions.audit())
    again = RetentionService(stores.metadata, stores.exemptions, stores.blobs).sweep()
    assert again.records == 0 and len(stores.exemptions.audit()) == audit_before  # nothing to say


def test_without_a_fleet_policy_the_default_retention_applies(stores: Stores) -> None:
    upload_sessions(stores, "ancient", "fresh")
    stores.age("ancient", 31)
    stores.age("fresh", 29)
    assert RetentionService(stores.metadata, stores.exemptions, stores.blobs).sweep().retention_days == 30
    assert stores.sessions() == ["fresh"]


def test_one_worker_sweeps_per_round(stores: Stores) -> None:
    now = [1_000_000.0]
    services = [
        RetentionService(stores.metadata, stores.exemptions, stores.blobs, clock=lambda: now[0])
        for _ in range(3)
    ]
    rounds = [service.sweep_if_due(3600) for service in services]
    assert [result is not None for result in rounds] == [True, False, False]
    now[0] += 3600
    assert services[1].sweep_if_due(3600) is not None  # the lease ran out: the next round is anyone's
    assert services[2].sweep_if_due(3600) is None


def test_the_collector_sweeps_on_its_schedule(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    app = create_app(data_dir, admin_token=ADMIN, retention_interval_s=0.3)
    # A complete policy (the collector refuses a partial one): the fleet default, kept 2 days.
    two_days = render_policy_toml(msgspec.structs.replace(DEFAULT_FLEET_POLICY, retention_days=2))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.put("/v1/admin/policy", content=two_days, headers=admin).status_code == 200
        token = client.post("/v1/enroll", json={"device_name": "laptop"}).json()["token"]
        for record in (make_batch("old", 0), make_batch("new", 0)):
            answer = client.put(
                f"/v1/records/{record_id_of(record)}",
                content=packed(record),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/x-demotrace-record",
                },
            )
            assert answer.status_code == 201
        engine = sqlalchemy.create_engine(f"sqlite:///{data_dir / 'collector.db'}")
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("UPDATE records SET received_at = :at WHERE session_id = 'old'"),
                {"at": time.time() - 3 * DAY_SECONDS},
            )
        engine.dispose()

        def swept() -> bool:
            actions = [entry["action"] for entry in client.get("/v1/admin/audit", headers=admin).json()]
            return "retention_deleted" in actions

        wait_until(swept, timeout=30)
        on_demand = client.post("/v1/admin/retention/run", headers=admin).json()
        assert on_demand["retention_days"] == 2 and on_demand["deleted_records"] == 0
    reader_store = MetadataStore.from_url(f"sqlite:///{data_dir / 'collector.db'}", migrate=False)
    assert [row.session_id for row in reader_store.records()] == ["new"]
    reader_store.close()
