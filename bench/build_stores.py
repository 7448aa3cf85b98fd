"""Dataset build throughput from real stores (a collector with sealed blobs, or a spool): the local engine
on one core against Ray with 1 and 2 workers, on SQLite + folder or --backend postgresql+s3.

Synthetic small frames; bench/build.py measures the build on real 1080p frames.

    .venv/bin/python bench/build_stores.py                          # 40 sessions x 60 steps, seed 1
    .venv/bin/python bench/build_stores.py --sessions 200 --steps 100 --cpus 2
    .venv/bin/python bench/build_stores.py --source spool           # the spool path (driver ships batches)

Generates a synthetic fleet (seeded: N sessions of M steps — clicks, typing, hotkeys, scrolls — each step
after its own small real PNG frame) in a real collector (SQLite + blob folder, sealed blobs; default) or a
real encrypted spool, builds every export from it with both engines, and prints steps per second per
core. From a collector, Ray workers read the records themselves (the driver hands out ids). Ray's
start-up (``ray.init``) is timed apart, and Ray builds twice per worker count: the first build also pays
for starting and warming its worker processes.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table
from services import moto_server, postgres_server  # bench/services.py: run as a script

from demotrace.collector.store import CollectorLocation
from demotrace.dataset.build import build_dataset
from demotrace.dataset.distributed import SpoolFrames, build_dataset_ray
from demotrace.device.spool import Spool, load_or_create_key
from demotrace.model import (
    Batch,
    Button,
    Event,
    Frame,
    FrameTaken,
    Key,
    Monitor,
    Record,
    Scroll,
    SessionHeader,
    Window,
)

WALL0 = 1_700_000_000.0
SCREEN_W, SCREEN_H = 1280, 800
FRAME_W, FRAME_H = 160, 100
EVENTS_PER_BATCH = 50
KEY = bytes(range(32))
WORDS = ["report", "budget", "meeting", "invoice", "draft", "review", "plan", "notes"]
APPS = [
    ("libreoffice-writer", "Report.odt - LibreOffice Writer"),
    ("firefox", "Inbox - Mail"),
    ("xterm", "xterm"),
]


def png_frame(rng: random.Random) -> bytes:
    """A small screenshot-like PNG: a few flat rectangles (compresses like a real UI, unlike noise)."""
    image = Image.new("RGB", (FRAME_W, FRAME_H), (240, 240, 240))
    for _ in range(6):
        left, top = rng.randrange(FRAME_W - 20), rng.randrange(FRAME_H - 10)
        box = (left, top, left + rng.randrange(10, 60), top + rng.randrange(5, 30))
        image.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), box)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def step_events(rng: random.Random, t: float) -> tuple[list[Event], float]:
    """One action starting at ``t``, and when the next may start."""

    def at(offset: float) -> tuple[float, float]:
        return t + offset, WALL0 + t + offset

    choice = rng.random()
    if choice < 0.4:
        x, y = rng.randrange(SCREEN_W), rng.randrange(SCREEN_H)
        (t0, w0), (t1, w1) = at(0.0), at(0.05)
        events: list[Event] = [
            Button(t=t0, wall=w0, down=True, button="left", x=x, y=y),
            Button(t=t1, wall=w1, down=False, button="left", x=x, y=y),
        ]
        return events, t + 1.0
    if choice < 0.75:
        events = []
        for index, char in enumerate(" ".join(rng.sample(WORDS, 2))):
            name = "space" if char == " " else char
            (t0, w0), (t1, w1) = at(index * 0.1), at(index * 0.1 + 0.03)
            events += [
                Key(t=t0, wall=w0, down=True, key=name, char=char),
                Key(t=t1, wall=w1, down=False, key=name, char=char),
            ]
        return events, t + 0.1 * len(events) / 2 + 2.5  # a pause after typing ends the text
    if choice < 0.85:
        (t0, w0), (t1, w1), (t2, w2), (t3, w3) = at(0.0), at(0.05), at(0.1), at(0.15)
        events = [
            Key(t=t0, wall=w0, down=True, key="ctrl_l"),
            Key(t=t1, wall=w1, down=True, key="s", char="\x13", modifiers=["ctrl"]),
            Key(t=t2, wall=w2, down=False, key="s", char="\x13", modifiers=["ctrl"]),
            Key(t=t3, wall=w3, down=False, key="ctrl_l"),
        ]
        return events, t + 1.0
    t0, w0 = at(0.0)
    scroll = Scroll(t=t0, wall=w0, x=rng.randrange(SCREEN_W), y=rng.randrange(SCREEN_H), dx=0, dy=-3)
    return [scroll], t + 1.0


def synthetic_session(rng: random.Random, index: int, steps: int) -> list[Record]:
    session_id, device_id = f"session-{index:05d}", f"device-{index % 17:03d}"
    start = index * 10_000.0
    app, title = APPS[index % len(APPS)]
    events: list[Event] = [
        Window(
            t=start,
            wall=WALL0 + start,
            app=app,
            title=title,
            pid=1,
            x=0,
            y=0,
            width=SCREEN_W,
            height=SCREEN_H,
        )
    ]
    frames: list[Record] = []
    t = start + 1.0
    for step in range(steps):
        frame_id = f"{session_id}-frame-{step:05d}"
        events.append(
            FrameTaken(
                t=t,
                wall=WALL0 + t,
                frame_id=frame_id,
                left=0,
                top=0,
                width=FRAME_W,
                height=FRAME_H,
                trigger="key",
            )
        )
        frames.append(
            Frame(
                frame_id=frame_id,
                session_id=session_id,
                device_id=device_id,
                t=t,
                wall=WALL0 + t,
                left=0,
                top=0,
                width=FRAME_W,
                height=FRAME_H,
                media_type="image/png",
                data=png_frame(rng),
            )
        )
        action, t = step_events(rng, t)
        events += action
    header = SessionHeader(
        session_id=session_id,
        device_id=device_id,
        platform="x11",
        screen_width=SCREEN_W,
        screen_height=SCREEN_H,
        monitors=[Monitor(left=0, top=0, width=SCREEN_W, height=SCREEN_H)],
        double_click_ms=400,
        double_click_px=4,
        t=start,
        wall=WALL0 + start,
    )
    batches: list[Record] = [
        Batch(
            batch_id=f"{session_id}-b{seq}",
            session_id=session_id,
            device_id=device_id,
            seq=seq,
            events=events[offset : offset + EVENTS_PER_BATCH],
            header=header if seq == 0 else None,
        )
        for seq, offset in enumerate(range(0, len(events), EVENTS_PER_BATCH))
    ]
    return frames + batches


def write_fleet(spool: Spool, sessions: int, steps: int, seed: int) -> None:
    rng = random.Random(seed)
    for index in range(sessions):
        spool.append(synthetic_session(rng, index, steps))


def write_collector(location: CollectorLocation, sessions: int, steps: int, seed: int) -> int:
    """The fleet stored by a real collector's ingest (one enrolled device per synthetic device id);
    returns the bytes of its blobs."""
    import zstandard

    from demotrace.collector.ingest import IngestService
    from demotrace.collector.store import KeyRing, MetadataStore
    from demotrace.model import encode_record
    from demotrace.protocol import record_id_of

    assert location.data_dir is not None
    location.data_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataStore.from_url(location.database())
    ingest = IngestService(
        metadata, location.blobs(), keyring=KeyRing(metadata.engine, location.master_key())
    )
    devices: dict[str, str] = {}
    compress = zstandard.ZstdCompressor(level=1).compress
    rng = random.Random(seed)
    total = 0
    for index in range(sessions):
        for record in synthetic_session(rng, index, steps):
            if record.device_id not in devices:
                devices[record.device_id] = ingest.enroll(record.device_id).device_id
            ingest.store_record(
                devices[record.device_id], record_id_of(record), compress(encode_record(record))
            )
    total = sum(row.blob_size for row in metadata.records())
    metadata.close()
    return total


@dataclass(frozen=True)
class Row:
    engine: str
    cores: int
    seconds: float
    steps: int
    phase_seconds: float = 0.0  # the sessions phase (reading records, processing sessions); 0: not timed
    phase_cpu: float = 0.0  # CPU seconds of that phase, in every process that did it


def bench_spool(
    args: argparse.Namespace, out: Path, console: Console, _stack: ExitStack
) -> tuple[list[Row], dict[int, float]]:
    key_path = out / "spool.key"
    spool = Spool(out / "spool", load_or_create_key(key_path))
    started = time.perf_counter()
    write_fleet(spool, args.sessions, args.steps, args.seed)
    spool_mb = spool.stats()["sealed_bytes"] / 1e6
    console.print(
        f"fleet: {args.sessions} sessions x {args.steps} steps, seed {args.seed}, "
        f"spool {spool_mb:.1f} MB, written in {time.perf_counter() - started:.1f} s"
    )
    rows: list[Row] = []
    started = time.perf_counter()
    local = build_dataset(spool.batches(), spool.load_frame, out / "local", pseudonym_key=KEY)
    rows.append(Row("local", 1, time.perf_counter() - started, local.steps))

    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False)
    startup = {args.cpus: time.perf_counter() - started}
    frames = SpoolFrames(out / "spool", key_path)
    try:
        for label in ("ray, 1st build (cold workers)", "ray, 2nd build"):
            started = time.perf_counter()
            summary = build_dataset_ray(spool.batches(), frames, out / "ray", pseudonym_key=KEY)
            rows.append(Row(label, args.cpus, time.perf_counter() - started, summary.steps))
    finally:
        ray.shutdown()
        spool.close()
    return rows, startup


def bench_collector(
    args: argparse.Namespace, out: Path, console: Console, stack: ExitStack
) -> tuple[list[Row], dict[int, float]]:
    from demotrace.collector.reader import CollectorReader, CollectorSource
    from demotrace.dataset.ray_stores import build_dataset_from_store

    location = CollectorLocation(out / "collector")
    if args.backend == "postgresql+s3":
        # Set before Ray starts: its workers inherit the AWS environment that points at moto.
        pg, s3 = stack.enter_context(postgres_server()), stack.enter_context(moto_server())
        os.environ.update(s3.environment())
        location = CollectorLocation(
            out / "collector", pg.create_database("bench_build"), s3.create_bucket("bench-build") + "/blobs"
        )
    started = time.perf_counter()
    blob_bytes = write_collector(location, args.sessions, args.steps, args.seed)
    console.print(
        f"fleet: {args.sessions} sessions x {args.steps} steps, seed {args.seed}, {args.backend} collector, "
        f"blobs {blob_bytes / 1e6:.1f} MB (sealed), stored in {time.perf_counter() - started:.1f} s"
    )
    rows: list[Row] = []
    # The session phase of the local engine is its whole build less the writing of the exports:
    # write_dataset is timed by wrapping the name build.py calls it by.
    written: list[tuple[float, float]] = []
    import demotrace.dataset.build as local_engine

    write_dataset = local_engine.__dict__["write_dataset"]

    def timed_write(*args: Any, **kwargs: Any) -> Any:
        begun, begun_cpu = time.perf_counter(), time.process_time()
        try:
            return write_dataset(*args, **kwargs)
        finally:
            written.append((time.perf_counter() - begun, time.process_time() - begun_cpu))

    local_engine.__dict__["write_dataset"] = timed_write
    started, started_cpu = time.perf_counter(), time.process_time()
    with CollectorReader(location=location) as reader:
        local = build_dataset(reader.iter_batches(), reader.load_frame, out / "local", pseudonym_key=KEY)
    seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    local_engine.__dict__["write_dataset"] = write_dataset
    rows.append(Row("local", 1, seconds, local.steps, seconds - written[0][0], cpu - written[0][1]))

    import ray

    startup: dict[int, float] = {}
    for cpus in sorted({1, args.cpus}):
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False)
        startup[cpus] = time.perf_counter() - started
        try:
            for label in (f"ray {cpus}w, 1st build (cold workers)", f"ray {cpus}w, 2nd build"):
                started = time.perf_counter()
                timings: dict[str, float] = {}
                summary = build_dataset_from_store(
                    CollectorSource(location), out / "ray", pseudonym_key=KEY, timings=timings
                )
                seconds = time.perf_counter() - started
                phase = timings["plan"] + timings["sessions"]
                rows.append(Row(label, cpus, seconds, summary.steps, phase, timings["worker_cpu"]))
        finally:
            ray.shutdown()
    return rows, startup


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--steps", type=int, default=60, help="steps per session")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (also runs with 1)")
    parser.add_argument("--source", choices=("collector", "spool"), default="collector")
    parser.add_argument(
        "--backend",
        choices=("sqlite+folder", "postgresql+s3"),
        default="sqlite+folder",
        help="the collector's stores (postgresql+s3: a PostgreSQL server and moto, started here)",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep the inputs and datasets here")
    args = parser.parse_args()
    console = Console(width=150)  # the whole table, even when the output goes to a file
    out = args.out or Path(tempfile.mkdtemp(prefix="demotrace-bench-build-"))
    bench = bench_collector if args.source == "collector" else bench_spool
    with ExitStack() as stack:
        rows, startup = bench(args, out, console, stack)

    table = Table(title=f"dataset build from a {args.source} (all exports)")
    columns = ("engine", "cores", "seconds", "steps/s", "per core", "vs local")
    for column in (*columns, "sessions phase s", "its CPU ms/step", "vs local"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    local = rows[0]
    local_rate = local.steps / local.seconds
    local_cpu = local.phase_cpu / local.steps if local.phase_cpu else 0.0
    for row in rows:
        rate = row.steps / row.seconds if row.seconds > 0 else 0.0
        cpu_per_step = row.phase_cpu / row.steps if row.phase_cpu and row.steps else 0.0
        table.add_row(
            row.engine,
            str(row.cores),
            f"{row.seconds:.2f}",
            f"{rate:.0f}",
            f"{rate / row.cores:.0f}",
            f"{(rate / row.cores) / local_rate:.2f}",
            f"{row.phase_seconds:.2f}" if row.phase_seconds else "-",
            f"{cpu_per_step * 1000:.2f}" if cpu_per_step else "-",
            f"{local_cpu / cpu_per_step:.2f}" if cpu_per_step and local_cpu else "-",
        )
    console.print(table)
    console.print(
        "sessions phase: reading the records and processing the sessions, what Ray spreads over its workers "
        "(the rest, writing the exports, viewer and report, runs on the driver in both engines). Its CPU "
        "per step is summed over every worker: 'vs local' > 0.8 means Ray's work per core is within 20 % "
        "of the local engine's, whatever else the machine is doing; wall-clock rates depend on that."
    )
    for cpus, seconds in startup.items():
        console.print(f"ray start-up (ray.init, num_cpus={cpus}): {seconds:.1f} s, not in the rows above")
    same = (out / "local" / "trajectories.jsonl").read_bytes() == (
        out / "ray" / "trajectories.jsonl"
    ).read_bytes()
    console.print(f"trajectories.jsonl identical across engines: {same}   (outputs in {out})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
