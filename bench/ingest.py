"""Collector ingest throughput with many simulated devices uploading at once, for 1 and 2 worker
processes, on SQLite + blob folder and on PostgreSQL + S3 (moto in server mode), all on loopback.

    .venv/bin/python bench/ingest.py                       # 32 devices x 40 records, both backends
    .venv/bin/python bench/ingest.py --devices 64 --records 50 --backend sqlite+folder

Each run starts a real ``demotrace server --workers N`` (a separate process tree), enrolls the devices,
then every device uploads its records at once (one HTTP/1.1 connection per device, asyncio in this
process): 3 batches (~3 KB) for every frame (~24 KB of PNG-like bytes), zstd-compressed as the recorder
sends them. Prints records/s and MB/s (compressed bodies), the ratio to 1 worker, and checks that ingest
stayed idempotent across the workers (everything re-sent answers 200 and nothing is stored twice).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import zstandard
from rich.console import Console
from rich.table import Table
from services import (
    MotoServer,
    PostgresServer,
    free_port,
    moto_server,
    postgres_server,
)  # bench/services.py: run as a script

from demotrace.collector.store import CollectorLocation, MetadataStore
from demotrace.model import Batch, Event, Frame, Key, encode_record
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

BACKENDS = ("sqlite+folder", "postgresql+s3")
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Upload:
    record_id: str
    body: bytes


def device_records(rng: random.Random, device: int, count: int) -> list[Upload]:
    """A device's records as the uploader sends them: zstd of the MessagePack, 1 frame per 3 batches."""
    compress = zstandard.ZstdCompressor(level=3).compress
    uploads = []
    for index in range(count):
        session = f"bench-{device:04d}"
        if index % 4 == 3:
            pixels = bytes(rng.getrandbits(8) for _ in range(8 * 1024)) * 3  # PNG-like: barely compressible
            record: Batch | Frame = Frame(
                frame_id=f"{session}-f{index}",
                session_id=session,
                device_id="x",
                t=float(index),
                wall=1.7e9 + index,
                left=0,
                top=0,
                width=160,
                height=100,
                media_type="image/png",
                data=pixels,
            )
        else:
            keys: list[Event] = [
                Key(t=index + k / 100, wall=1.7e9 + index, down=True, key="a", char="a") for k in range(40)
            ]
            record = Batch(
                batch_id=f"{session}-b{index}", session_id=session, device_id="x", seq=index, events=keys
            )
        uploads.append(Upload(record_id_of(record), compress(encode_record(record))))
    return uploads


@contextmanager
def collector(
    args: argparse.Namespace,
    data_dir: Path,
    workers: int,
    database_url: str | None,
    blobs_url: str | None,
    env: dict[str, str],
) -> Iterator[tuple[str, int]]:
    """The collector's URL and process id (the root of its process tree)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "demotrace.cli",
        "server",
        "--data",
        str(data_dir),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--retention-interval",
        "0",
        "--max-concurrent-uploads",
        "64",
    ]
    if database_url:
        command += ["--database-url", database_url]
    if blobs_url:
        command += ["--blobs", blobs_url]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")  # the collector's own log, to read after
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # bounded: a collector that never answers ends the benchmark
            if process.poll() is not None:
                raise RuntimeError(f"collector exited: see {log.name}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("collector did not start")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


async def upload_all(
    url: str, tokens: list[str], uploads: list[list[Upload]]
) -> tuple[float, dict[int, int]]:
    """Every device uploads its records at once; returns the seconds and the count of each status."""
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=len(tokens))

    async def device(client: httpx.AsyncClient, token: str, records: list[Upload]) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE}
        for upload in records:
            status = 0
            for _attempt in range(20):  # like the device's uploader: retry busy and broken links; bounded
                try:
                    answer = await client.put(
                        f"{url}/v1/records/{upload.record_id}", content=upload.body, headers=headers
                    )
                    status = answer.status_code
                except httpx.TransportError:  # a kept-alive connection the server closed meanwhile
                    status = -1
                if status not in (503, -1):
                    break
                statuses[status] = statuses.get(status, 0) + 1  # counted as retries
                await asyncio.sleep(0.05)
            statuses[status] = statuses.get(status, 0) + 1

    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(
            *(device(client, token, records) for token, records in zip(tokens, uploads, strict=True))
        )
        return time.perf_counter() - started, statuses


@dataclass(frozen=True)
class Result:
    retries: int  # 503 busy answers and broken connections, each retried
    backend: str
    workers: int
    records: int
    megabytes: float
    seconds: float
    stored: int
    resent_ok: bool
    server_cpu: float  # CPU seconds of the collector's process tree during the upload
    client_cpu: float  # of the load generator (this process)
    busy: float  # % of the machine's CPU time in use during the upload, everyone's work included


class Services:
    """PostgreSQL and moto, started on first use and stopped at the end of the run."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._pg: PostgresServer | None = None
        self._s3: MotoServer | None = None

    def fleet_stores(self, name: str) -> tuple[str, str, dict[str, str]]:
        """A new database and bucket: their URLs and the AWS environment for the collector."""
        if self._pg is None:
            self._pg = self._stack.enter_context(postgres_server())
        if self._s3 is None:
            self._s3 = self._stack.enter_context(moto_server())
        database_url = self._pg.create_database(name.replace("-", "_"))
        return database_url, self._s3.create_bucket(name) + "/blobs", self._s3.environment()


def run(args: argparse.Namespace, backend: str, workers: int, services: Services, root: Path) -> Result:
    data_dir = root / f"{backend}-{workers}w"
    database_url = blobs_url = None
    env: dict[str, str] = {}
    if backend == "postgresql+s3":
        database_url, blobs_url, env = services.fleet_stores(f"bench-{workers}w-{int(time.time())}")
    rng = random.Random(args.seed)
    uploads = [device_records(rng, device, args.records) for device in range(args.devices)]
    with collector(args, data_dir, workers, database_url, blobs_url, env) as (url, pid):
        tokens = [enroll(url, device) for device in range(args.devices)]
        server_cpu, client_cpu, machine = tree_cpu(pid), time.process_time(), psutil.cpu_times()
        seconds, statuses = asyncio.run(upload_all(url, tokens, uploads))
        server_cpu, client_cpu = tree_cpu(pid) - server_cpu, time.process_time() - client_cpu
        busy = machine_busy(machine, psutil.cpu_times())
        resent = [records[:3] for records in uploads]  # again, to any worker: must be "already stored"
        _, again = asyncio.run(upload_all(url, tokens, resent))
    retries = statuses.pop(503, 0) + statuses.pop(-1, 0)
    if statuses != {201: args.devices * args.records}:
        raise RuntimeError(f"unexpected answers: {statuses}")
    store = MetadataStore.from_url(CollectorLocation(data_dir, database_url).database(), migrate=False)
    stored = store.record_count()
    store.close()
    megabytes = sum(len(upload.body) for records in uploads for upload in records) / 1e6
    return Result(
        retries,
        backend,
        workers,
        args.devices * args.records,
        megabytes,
        seconds,
        stored,
        {status: n for status, n in again.items() if status not in (503, -1)} == {200: 3 * args.devices},
        server_cpu,
        client_cpu,
        busy,
    )


def machine_busy(before: Any, after: Any) -> float:
    total = sum(after) - sum(before)
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
    return 100.0 * (total - idle) / total if total > 0 else 0.0


def enroll(url: str, device: int) -> str:
    """A device's token, enrolled from a loopback address of its own (127.0.0.2, .3 ...): as devices
    come from their own addresses, so the collector's enrolment limit per address does not apply."""
    transport = httpx.HTTPTransport(local_address=f"127.0.{device // 250}.{device % 250 + 2}")
    with httpx.Client(base_url=url, timeout=30, transport=transport) as client:
        answer = client.post("/v1/enroll", json={"device_name": f"d{device}"})
        answer.raise_for_status()
        token: str = answer.json()["token"]
        return token


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants (the collector's workers)."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--records", type=int, default=40, help="records per device")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", action="store_true", help="keep the collectors' folders and logs")
    args = parser.parse_args()
    console = Console(width=150)  # the whole table, even when the output goes to a file
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    results: list[Result] = []
    folder = tempfile.mkdtemp(prefix="demotrace-bench-ingest-")
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
        services = Services(stack)
        for backend in backends:
            for workers in args.workers:
                results.append(run(args, backend, workers, services, Path(folder)))
                console.print(f"{backend}, {workers} worker(s): done")
    table = Table(title=f"ingest: {args.devices} devices uploading at once, {args.records} records each")
    for column in (
        "backend",
        "workers",
        "records",
        "MB",
        "seconds",
        "records/s",
        "MB/s",
        "vs 1 worker",
        "stored once",
        "re-sent: 200",
        "retries",
        "collector CPU ms/record",
        "client CPU ms/record",
        "machine busy %",
    ):
        table.add_column(column, justify="left" if column == "backend" else "right")
    base: dict[str, float] = {}
    for result in results:
        rate = result.records / result.seconds
        base.setdefault(result.backend, rate)
        table.add_row(
            result.backend,
            str(result.workers),
            str(result.records),
            f"{result.megabytes:.1f}",
            f"{result.seconds:.2f}",
            f"{rate:.0f}",
            f"{result.megabytes / result.seconds:.1f}",
            f"{rate / base[result.backend]:.2f}",
            str(result.stored == result.records),
            str(result.resent_ok),
            str(result.retries),
            f"{result.server_cpu / result.records * 1000:.1f}",
            f"{result.client_cpu / result.records * 1000:.1f}",
            f"{result.busy:.0f}",
        )
    console.print(table)
    console.print(
        "the load generator runs in this process, on the same cores as the collector; 'machine busy' is "
        "everyone's CPU use during the upload: near 100 %, a second worker has no core to run on"
    )
    return 0 if all(r.stored == r.records and r.resent_ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
