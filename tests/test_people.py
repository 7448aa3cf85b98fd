"""People, not devices: a device is enrolled for a (pseudonymous) person; an exemption or a deletion
covers all of their devices. Deleting a person destroys their data key first (crypto-shredding), so a
backup copy of their blobs is unreadable. On SQLite + blob folder and on PostgreSQL + S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
import sqlalchemy
from conftest import Backend
from test_collector import make_batch, make_frame, packed

from demotrace.collector.app import create_app
from demotrace.collector.reader import CollectorReader, ReaderError
from demotrace.collector.server import ServerThread
from demotrace.collector.store import CollectorLocation, KeyRing, MasterKey, MetadataStore
from demotrace.collector.store.keyring import DataKeyDestroyed, MasterKeyError, is_sealed
from demotrace.model import Key, Record
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

ADMIN = "admin-token-for-people-tests"
TYPED = "quarterly-figures-typed-by-alice"


@dataclass
class Fleet:
    client: httpx.Client
    location: CollectorLocation

    def enroll(self, name: str, person_id: str | None = None) -> tuple[str, str, str]:
        body = {"device_name": name} if person_id is None else {"device_name": name, "person_id": person_id}
        answer = self.client.post("/v1/enroll", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()["device_id"], answer.json()["token"], answer.json()["person_id"]

    def upload(self, token: str, record: Record) -> httpx.Response:
        return self.client.put(
            f"/v1/records/{record_id_of(record)}",
            content=packed(record),
            headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
        )

    def admin(self, method: str, path: str) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {ADMIN}"})

    def stored(self) -> dict[str, str]:
        """record id → device id of every stored record row."""
        store = MetadataStore.from_url(self.location.database(), migrate=False)
        try:
            return {row.record_id: row.device_id for row in store.records()}
        finally:
            store.close()

    def blobs(self) -> dict[str, bytes]:
        store = self.location.blobs()
        return {key: store.get(key) or b"" for key in store.keys()}  # noqa: SIM118 (not a dict)


@pytest.fixture
def fleet(tmp_path: Path, backend: Backend) -> Iterator[Fleet]:
    data_dir = tmp_path / "data"
    app = create_app(
        data_dir,
        database_url=backend.database_url,
        blobs_url=backend.blobs_url,
        admin_token=ADMIN,
        retention_interval_s=None,
    )
    location = CollectorLocation(data_dir, backend.database_url, backend.blobs_url)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Fleet(client, location)


def typed_batch(session_id: str) -> Record:
    keys = [Key(t=101.0 + i / 100, wall=1e9, down=True, key=c, char=c) for i, c in enumerate(TYPED)]
    return msgspec.structs.replace(make_batch(session_id, 0), events=keys)


def test_an_exemption_asked_from_one_laptop_covers_all_of_the_persons_devices(fleet: Fleet) -> None:
    laptop, laptop_token, alice = fleet.enroll("alice-laptop", "p-alice")
    desktop, desktop_token, same = fleet.enroll("alice-desktop", "p-alice")
    bob_device, bob_token, bob = fleet.enroll("bob-laptop")
    assert same == alice == "p-alice" and bob.startswith("p-") and bob != alice
    for token, session in ((laptop_token, "a1"), (desktop_token, "a2"), (bob_token, "b1")):
        for record in (make_batch(session, 0), make_frame(session, 0)):
            assert fleet.upload(token, record).status_code == 201

    asked = fleet.client.post(
        "/v1/exemptions",
        json={"reason": "personal reasons", "delete_collected": True},
        headers={"Authorization": f"Bearer {laptop_token}"},
    )
    assert asked.status_code == 201 and asked.json()["person_id"] == "p-alice"
    # The desktop cannot ask again: its person is already waiting for a decision.
    again = fleet.client.post(
        "/v1/exemptions", json={"reason": "me too"}, headers={"Authorization": f"Bearer {desktop_token}"}
    )
    assert again.status_code == 409
    decided = fleet.admin("POST", f"/v1/admin/exemptions/{asked.json()['id']}/approve")
    assert decided.status_code == 200, decided.text
    assert sorted(decided.json()["devices"]) == sorted([laptop, desktop])
    assert decided.json()["deleted_records"] == 4

    assert set(fleet.stored().values()) == {bob_device}
    for token in (laptop_token, desktop_token):
        refused = fleet.upload(token, make_batch("later", 0))
        assert refused.status_code == 403 and refused.json()["error"] == "exempt"
        policy = fleet.client.get("/v1/device/policy", headers={"Authorization": f"Bearer {token}"})
        assert policy.json()["exempt"] is True
    # A device enrolled later for the same person is covered too.
    _, new_token, _ = fleet.enroll("alice-new-laptop", "p-alice")
    assert fleet.upload(new_token, make_batch("new", 0)).status_code == 403
    assert fleet.upload(bob_token, make_batch("b2", 0)).status_code == 201


def test_deleting_a_person_shreds_their_key_so_a_backup_of_their_blobs_is_unreadable(fleet: Fleet) -> None:
    _, alice_laptop, _ = fleet.enroll("alice-laptop", "p-alice")
    _, alice_desktop, _ = fleet.enroll("alice-desktop", "p-alice")
    _, bob_token, bob = fleet.enroll("bob-laptop", "p-bob")
    alice_records = [typed_batch("a1"), make_frame("a1", 0), make_batch("a2", 0)]
    for token, record in zip((alice_laptop, alice_laptop, alice_desktop), alice_records, strict=True):
        assert fleet.upload(token, record).status_code == 201
    assert fleet.upload(bob_token, make_batch("b1", 0)).status_code == 201

    backup = fleet.blobs()  # what a nightly backup of the object store holds
    assert len(backup) == 4 and all(is_sealed(blob) for blob in backup.values())
    # Sealed means no plaintext: not the typed text, not the frame's pixels.
    frame_bytes = alice_records[1].data  # type: ignore[union-attr]
    assert not any(TYPED.encode() in blob or frame_bytes[:64] in blob for blob in backup.values())

    deleted = fleet.admin("POST", "/v1/admin/people/p-alice/delete")
    assert deleted.status_code == 200, deleted.text
    answer = deleted.json()
    assert (answer["deleted_records"], answer["deleted_blobs"], answer["data_key"]) == (3, 3, "destroyed")
    assert len(answer["devices"]) == 2
    assert fleet.admin("POST", "/v1/admin/people/p-nobody/delete").status_code == 404
    assert fleet.admin("POST", "/v1/admin/people/alice@example.com/delete").status_code == 400

    remaining = fleet.blobs()
    assert len(remaining) == 1
    master = fleet.location.master_key()
    store = MetadataStore.from_url(fleet.location.database(), migrate=False)
    try:
        keys = KeyRing(store.engine, master)
        for key, blob in backup.items():
            if key in remaining:
                assert keys.open(bob, key, blob)  # bob's still opens
                continue
            with pytest.raises(DataKeyDestroyed):
                keys.open("p-alice", key, blob)
        with store.engine.connect() as connection:
            owners = connection.execute(sqlalchemy.text("SELECT person_id FROM data_keys")).scalars().all()
        assert owners == ["p-bob"]
    finally:
        store.close()
    actions = [entry["action"] for entry in fleet.admin("GET", "/v1/admin/audit").json()]
    assert actions[-2:] == ["person_data_deleted", "person_blobs_deleted"]

    # Alice keeps her devices: what she uploads now is new data, under a new key.
    assert fleet.upload(alice_laptop, make_batch("a3", 0)).status_code == 201
    with CollectorReader(location=fleet.location) as reader:
        assert sorted(batch.session_id for batch in reader.iter_batches()) == ["a3", "b1"]


def test_enrolment_refuses_a_person_id_that_is_not_a_pseudonym(fleet: Fleet) -> None:
    for bad in ("alice@example.com", "", "a b", "x" * 65, ".hidden"):
        answer = fleet.client.post("/v1/enroll", json={"device_name": "laptop", "person_id": bad})
        assert answer.status_code == 400, bad
        assert "person_id" in answer.json()["detail"]


def test_a_reader_with_another_master_key_is_told_which_key_it_needs(fleet: Fleet, tmp_path: Path) -> None:
    _, token, _ = fleet.enroll("laptop", "p-carol")
    assert fleet.upload(token, make_batch("c1", 0)).status_code == 201
    wrong = tmp_path / "wrong.key"
    wrong.write_text(("ab" * 32) + "\n")
    location = CollectorLocation(
        fleet.location.data_dir, fleet.location.database_url, fleet.location.blobs_url, wrong
    )
    with CollectorReader(location=location) as reader, pytest.raises(ReaderError) as error:
        list(reader.iter_batches())
    assert fleet.location.master_key().key_id in str(error.value)
    assert MasterKey(bytes.fromhex("ab" * 32)).key_id in str(error.value)
    with pytest.raises(MasterKeyError):
        MasterKey(b"short")
