"""Record rows stored by many threads at once are committed in groups, each row once, on SQLite."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import event

from demotrace.collector.store import MetadataStore, default_database_url
from demotrace.collector.store.metadata import StoredRecord


def row(record_id: str) -> StoredRecord:
    return StoredRecord(
        record_id=record_id,
        kind="batch",
        device_id="dev-1",
        session_id="s",
        seq=0,
        t=0.0,
        wall=0.0,
        size=1,
        blob_key=f"batch/dev-1/{record_id}",
        blob_size=1,
        sha256="0" * 64,
        received_at=0.0,
        person_id="p-1",
    )


def test_rows_added_at_once_share_commits_and_each_is_stored_once(tmp_path: Path) -> None:
    store = MetadataStore.from_url(default_database_url(tmp_path))
    store.add_device("dev-1", "laptop", "f" * 64, 0.0, "p-1")
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _connection: commits.append(1))
    ids = [f"r{index}" for index in range(200)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        # Every id twice, at the same time: one insert wins, the other finds it stored.
        results = list(pool.map(lambda record_id: (record_id, store.add_record(row(record_id))), ids + ids))
    inserted = sorted(record_id for record_id, was_inserted in results if was_inserted)
    assert inserted == sorted(ids)
    assert store.record_count() == 200
    assert len(commits) < 200  # fewer commits (fsyncs) than rows: the rows waited together
    # A row whose group fails as a whole (a device that does not exist) fails alone.
    orphan = StoredRecord(**{**row("orphan").__dict__, "device_id": "no-such-device"})
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda record: _outcome(store, record), [orphan, row("fine")]))
    assert outcomes[1] is True and outcomes[0] is not True
    store.close()


def _outcome(store: MetadataStore, record: StoredRecord) -> bool | str:
    try:
        return store.add_record(record)
    except Exception as error:
        return type(error).__name__
