"""Peak collector memory under the worst valid uploads: frames of 63 MiB of zeros (~2 KB compressed each),
sent by many devices at once, plus zstd and MessagePack bombs.

The collector runs as its own process (`demotrace server`), so the figures are the whole process:
its resident set before the round (the baseline, same run), its peak (VmHWM) and what it still holds
after. Printed as MiB and as ratios to the configured ingest memory budget.

    .venv/bin/python -m bench.collector_memory [--uploads 16] [--budget-mb 512] [--unbounded]

``--unbounded`` runs the same round again with a budget far above the machine's memory, which is what
the collector did before the budget existed (expect gigabytes).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import zstandard

from demotrace.model import Frame, encode_record
from demotrace.protocol import RECORD_MEDIA_TYPE

MiB = 1024 * 1024
BLOATED_FRAME_BYTES = 63 * MiB
UPLOADS_PER_DEVICE = 2  # the collector's default per-device concurrency


def bloated_frame(frame_id: str, size: int = BLOATED_FRAME_BYTES) -> bytes:
    """A valid frame record whose data is ``size`` zero bytes, compressed (about 2 KB for 63 MiB)."""
    frame = Frame(
        frame_id=frame_id,
        session_id="bloat",
        device_id="x",
        t=0.0,
        wall=0.0,
        left=0,
        top=0,
        width=4096,
        height=4096,
        media_type="image/png",
        data=bytes(size),
    )
    return zstandard.ZstdCompressor(level=19).compress(encode_record(frame))


def msgpack_bomb() -> bytes:
    """A record whose MessagePack declares a 4 GiB binary in 20 bytes."""
    head = msgspec.msgpack.encode({"type": "frame_image", "frame_id": "bomb"})
    # One more map entry than encoded: "data", a bin32 that says 4 GiB and brings nothing.
    entries = bytes([head[0] + 1]) + head[1:] + msgspec.msgpack.encode("data")
    return zstandard.ZstdCompressor().compress(entries + b"\xc6\xff\xff\xff\xf0")


def zstd_bomb(size: int = 2 * 1024 * MiB) -> bytes:
    compressor = zstandard.ZstdCompressor(level=1)
    chunk = compressor.compressobj()
    parts = [chunk.compress(bytes(64 * MiB)) for _ in range(size // (64 * MiB))]
    return b"".join(parts) + chunk.flush()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_memory(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process, from /proc."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current resident set (Linux 4.0+: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Collector:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def start_collector(data: Path, budget_mb: int) -> Collector:
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEMOTRACE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "demotrace.cli", "server", "--data", str(data), "--port", str(port),
         "--max-ingest-memory-mb", str(budget_mb)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # a bench may poll what it observes
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return Collector(process, url)
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the collector did not start")
        time.sleep(0.1)


@dataclass
class RoundResult:
    baseline_rss: int
    peak_rss: int
    after_rss: int
    stored: int
    refusals: dict[int, int]
    bombs: list[int]


def enroll_devices(url: str, count: int) -> list[str]:
    tokens = []
    with httpx.Client(timeout=30) as client:
        for index in range(count):
            answer = client.post(f"{url}/v1/enroll", json={"device_name": f"bloat-{index}"})
            answer.raise_for_status()
            tokens.append(answer.json()["token"])
    return tokens


def hostile_round(collector: Collector, uploads: int, deadline_s: float = 300.0) -> RoundResult:
    """Send ``uploads`` bloated frames at once (two per device), each retried on 429/503 until stored,
    then three bombs; returns the collector's memory around it."""
    tokens = enroll_devices(collector.url, max(1, uploads // UPLOADS_PER_DEVICE))
    bodies = [bloated_frame(f"bloat-{index}") for index in range(uploads)]
    pid = collector.process.pid
    time.sleep(0.5)
    baseline, _ = process_memory(pid)
    reset_peak(pid)
    refusals: dict[int, int] = {}
    stored = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def send(index: int) -> None:
        token = tokens[index // UPLOADS_PER_DEVICE % len(tokens)]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE}
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < stop_at:
                answer = client.put(
                    f"{collector.url}/v1/records/bloat-{index}", content=bodies[index], headers=headers
                )
                if answer.status_code in (200, 201):
                    with lock:
                        stored[0] += 1
                    return
                with lock:
                    refusals[answer.status_code] = refusals.get(answer.status_code, 0) + 1
                if answer.status_code not in (429, 503):
                    return
                time.sleep(0.2)  # shorter than Retry-After: keeps the collector under pressure

    threads = [threading.Thread(target=send, args=(index,)) for index in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bomb_answers = []
    with httpx.Client(timeout=120) as client:
        headers = {"Authorization": f"Bearer {tokens[0]}", "Content-Type": RECORD_MEDIA_TYPE}
        for name, body in (("zstd-bomb", zstd_bomb()), ("bomb", msgpack_bomb())):
            bomb_answers.append(
                client.put(f"{collector.url}/v1/records/{name}", content=body, headers=headers).status_code
            )
    _, peak = process_memory(pid)
    time.sleep(1.0)
    after, _ = process_memory(pid)
    return RoundResult(baseline, peak, after, stored[0], refusals, bomb_answers)


def measure(uploads: int, budget_mb: int) -> RoundResult:
    with tempfile.TemporaryDirectory(prefix="dt-bench-mem-") as folder:
        collector = start_collector(Path(folder) / "data", budget_mb)
        try:
            return hostile_round(collector, uploads)
        finally:
            collector.stop()


def report(label: str, budget_mb: int, result: RoundResult) -> None:
    growth = result.peak_rss - result.baseline_rss
    print(
        f"{label}: budget {budget_mb} MiB | baseline RSS {result.baseline_rss / MiB:.0f} MiB | "
        f"peak {result.peak_rss / MiB:.0f} MiB (growth {growth / MiB:.0f} MiB = "
        f"{growth / (budget_mb * MiB):.2f} x budget) | held after {result.after_rss / MiB:.0f} MiB "
        f"({(result.after_rss - result.baseline_rss) / MiB:+.0f}) | stored {result.stored} | "
        f"refusals {dict(sorted(result.refusals.items()))} | bombs answered {result.bombs}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=16)
    parser.add_argument("--budget-mb", type=int, default=512)
    parser.add_argument("--unbounded", action="store_true", help="also run with no effective budget")
    args = parser.parse_args()
    print(f"{args.uploads} uploads of a {BLOATED_FRAME_BYTES // MiB} MiB zero frame "
          f"({len(bloated_frame('probe')) / 1024:.1f} KiB compressed), two per device, at once")  # fmt: skip
    report("bounded", args.budget_mb, measure(args.uploads, args.budget_mb))
    if args.unbounded:
        report("unbounded", 100_000, measure(args.uploads, 100_000))


if __name__ == "__main__":
    main()
