"""Several collector worker processes behind one address (``demotrace server --workers 2``) share state
only through the database and the blob store: ingest stays idempotent across them. On SQLite + blob
folder and on PostgreSQL + S3 (moto)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import Backend
from test_collector import make_batch, make_frame, packed
from test_uploader import wait_until

from bench.services import free_port
from demotrace.collector.store import CollectorLocation, MetadataStore
from demotrace.model import Record
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of


@pytest.fixture
def two_workers(tmp_path: Path, backend: Backend) -> Iterator[tuple[str, CollectorLocation]]:
    data_dir, port = tmp_path / "data", free_port()
    command = [sys.executable, "-m", "demotrace.cli", "server", "--data", str(data_dir)]
    command += ["--port", str(port), "--workers", "2", "--retention-interval", "0"]
    if backend.database_url is not None:
        command += ["--database-url", backend.database_url]
    if backend.blobs_url is not None:
        command += ["--blobs", backend.blobs_url]
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEMOTRACE_")}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=90)
        yield url, CollectorLocation(data_dir, backend.database_url, backend.blobs_url)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_the_same_records_sent_to_two_workers_at_once_are_stored_once(
    two_workers: tuple[str, CollectorLocation],
) -> None:
    url, location = two_workers
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post("/v1/enroll", json={"device_name": "laptop"}).json()["token"]
    records = [make_frame("s", index, size=32 * 1024) for index in range(6)] + [make_batch("s", 0)]
    start = threading.Barrier(12)

    def send(own: httpx.Client, record: Record) -> int:
        # One device sending 12 at once is past its upload concurrency (limits.py): it is told to retry
        # (429), as its uploader would.
        while True:
            status = own.put(
                f"/v1/records/{record_id_of(record)}",
                content=packed(record),
                headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
            ).status_code
            if status != 429:
                return status
            time.sleep(0.05)

    def send_all(_: int) -> list[tuple[str, int]]:
        # A client of its own per thread: new connections, spread over the workers by the kernel.
        with httpx.Client(base_url=url, timeout=60) as own:
            start.wait()
            return [(record_id_of(record), send(own, record)) for record in records]

    with ThreadPoolExecutor(12) as pool:
        answers = [answer for batch in pool.map(send_all, range(12)) for answer in batch]
    created = Counter(record_id for record_id, status in answers if status == 201)
    assert {status for _, status in answers} <= {200, 201}
    assert created == Counter({record_id_of(record): 1 for record in records})  # one 201 per record
    store = MetadataStore.from_url(location.database(), migrate=False)
    try:
        assert store.record_count() == len(records)
    finally:
        store.close()
    assert len(list(location.blobs().keys())) == len(records)  # no blob written twice under two keys
