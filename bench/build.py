"""Dataset build throughput on real 1080p frames: local engine (one core, then every core) and Ray.

    .venv/bin/python bench/build.py                        # 8 and 24 sessions, local and Ray
    .venv/bin/python bench/build.py --before 12b9447       # and the same 8 sessions built by that commit
    .venv/bin/python bench/build.py --encodings            # the image encodings compared on real frames
    .venv/bin/python bench/build.py --records --ray-data   # and the engines before reading by session

The frames are real: the demo's scripted session (`demotrace demo --seconds 180`: Xvfb 1920x1080,
openbox, our Tk app and an xterm, a real recorder uploading to a real collector), recorded once and kept
in --cache (~3.5 minutes the first time). A fleet of N sessions is that session N times over with fresh
session, device, batch and frame ids, in a real encrypted spool. Every build runs in a process of its
own (``--child``), so its peak memory is its whole process tree's (PSS sampled every 20 ms, pool workers
and Ray's processes included); its CPU is its own and its children's. ``--before REF`` builds the same fleet
with the code of commit REF, from a temporary git worktree, in the same run.

Per core: steps per second of wall time divided by the cores the engine was given, and steps per
CPU-second of the whole process tree (the same figure on an idle machine; on a shared one, the one
that does not count other people's work). Ray's start-up
(``ray.init``) is timed apart; it builds twice and the 2nd build is its figure (the 1st also starts and
warms its worker processes). Ray runs with 1 and with --cores CPUs, and its steps per core are divided
by the local engine's with as many cores. The local engine reads the spool one session at a time, by id,
as the CLI does; ``--records`` also runs the pool fed from every batch read up front (the engine before),
``--ray-data`` the Ray Data engine whose driver reads and ships every batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

KEY = bytes(range(32))
REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "demotrace-bench"


# --- the recording and the fleet ----------------------------------------------------------------------


def recorded_session(cache: Path, seconds: int, seed: int, console: Console) -> Path:
    """The collector data folder of one recorded demo session, recorded on the first call."""
    folder = cache / f"demo-{seconds}s-seed{seed}"
    if (folder / "collector" / "collector.db").is_file() or (folder / "done").is_file():
        return folder / "collector"
    console.print(f"recording the demo session once ({seconds} s of scripted input) into {folder} ...")
    folder.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "demotrace.cli", "demo", "--seconds", str(seconds), "--seed", str(seed)]
    subprocess.run([*command, "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
    (folder / "done").write_text("recorded\n")
    return folder / "collector"


def write_fleet(collector: Path, sessions: int, spool_dir: Path, key_path: Path) -> int:
    """The recorded session ``sessions`` times over, with fresh ids, into a new spool; returns its bytes."""
    import msgspec

    from demotrace.collector.reader import CollectorReader
    from demotrace.device.spool import Spool, load_or_create_key
    from demotrace.model import Batch, Frame, FrameTaken

    with CollectorReader(collector) as reader:
        batches, frames = list(reader.iter_batches()), list(reader.iter_frames())
    spool = Spool(spool_dir, load_or_create_key(key_path))
    day = 86_400.0
    for copy in range(sessions):

        def new(identifier: str, copy: int = copy) -> str:
            return f"{identifier}-{copy:04d}"

        spool.append(
            [
                msgspec.structs.replace(
                    frame,
                    frame_id=new(frame.frame_id),
                    session_id=new(frame.session_id),
                    device_id=new(frame.device_id),
                    wall=frame.wall + copy * day,
                    base_frame_id=new(frame.base_frame_id) if frame.base_frame_id else None,
                )
                for frame in frames
            ]
        )
        copies: list[Batch | Frame] = []
        for batch in batches:
            events = [
                msgspec.structs.replace(event, frame_id=new(event.frame_id), wall=event.wall + copy * day)
                if isinstance(event, FrameTaken)
                else msgspec.structs.replace(event, wall=event.wall + copy * day)
                for event in batch.events
            ]
            header = batch.header
            if header is not None:
                header = msgspec.structs.replace(
                    header,
                    session_id=new(header.session_id),
                    device_id=new(header.device_id),
                    wall=header.wall + copy * day,
                )
            copies.append(
                msgspec.structs.replace(
                    batch,
                    batch_id=new(batch.batch_id),
                    session_id=new(batch.session_id),
                    device_id=new(batch.device_id),
                    events=events,
                    header=header,
                )
            )
        spool.append(copies)
    size = spool.stats()["sealed_bytes"]
    spool.close()
    return size


# --- one build, in a process of its own ---------------------------------------------------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one build as ``spec`` says; only the API the base commit has too for engine "loader"."""
    import resource

    from demotrace.dataset.build import build_dataset
    from demotrace.device.spool import open_spool

    spool_dir, key_path, out = Path(spec["spool"]), Path(spec["key"]), Path(spec["out"])

    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    spool = open_spool(spool_dir, key_path)
    result: dict[str, Any] = {}
    if spec["engine"] in ("ray", "ray-data"):
        import ray

        from demotrace.dataset.distributed import LOCAL_RAY_SYSTEM_CONFIG, SpoolFrames, build_dataset_ray
        from demotrace.dataset.ray_stores import build_dataset_from_store
        from demotrace.dataset.record_sources import SpoolRecords

        def tree_cpu() -> float:
            """CPU of this process and every live descendant: Ray's daemons and workers."""
            total = 0.0
            me = psutil.Process()
            for process in [me, *me.children(recursive=True)]:
                with suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            return total

        started = time.perf_counter()
        ray.init(
            num_cpus=spec["cores"],
            include_dashboard=False,
            logging_level=logging.ERROR,
            _system_config=LOCAL_RAY_SYSTEM_CONFIG,  # as the CLI starts a local Ray: workers not niced
        )
        import ray.data  # Ray Data sets up its loggers on import: quiet them after that

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        result["ray_start"] = time.perf_counter() - started
        try:
            for build in ("cold", "warm"):
                started, cpu_started = time.perf_counter(), tree_cpu()
                if spec["engine"] == "ray-data":  # the Ray Data engine: the driver reads every batch
                    summary = build_dataset_ray(
                        spool.batches(), SpoolFrames(spool_dir, key_path), out, pseudonym_key=KEY
                    )
                else:  # plain tasks that read their sessions from the spool by id
                    phases: dict[str, float] = {}
                    summary = build_dataset_from_store(
                        SpoolRecords(spool_dir, key_path), out, pseudonym_key=KEY, timings=phases
                    )
                    result["phases"] = phases
                result[f"wall_{build}"] = time.perf_counter() - started
                result["cpu"] = tree_cpu() - cpu_started  # Ray's processes stay up between builds
            result["wall"] = result["wall_warm"]
        finally:
            ray.shutdown()
    else:
        started, cpu_started = time.perf_counter(), cpu()
        if spec["engine"] == "loader":
            summary = build_dataset(spool.batches(), spool.load_frame, out, pseudonym_key=KEY)
        elif spec["engine"] == "local-records":  # every batch read up front, then the sessions
            from demotrace.dataset.frame_sources import SpoolFrames

            frames = SpoolFrames(spool_dir, key_path)
            summary = build_dataset(spool.batches(), frames, out, pseudonym_key=KEY, workers=spec["cores"])
        else:  # one session read at a time, by id (what the CLI does)
            from demotrace.dataset.record_sources import SpoolRecords
            from demotrace.dataset.store_build import build_dataset_from_source

            source = SpoolRecords(spool_dir, key_path)
            summary = build_dataset_from_source(source, out, pseudonym_key=KEY, workers=spec["cores"])
        result["wall"] = time.perf_counter() - started
        result["cpu"] = cpu() - cpu_started
    spool.close()
    result.update(steps=summary.steps, frames=summary.frames_written, image_bytes=summary.image_bytes)
    result["out_bytes"] = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    return result


class TreeRss:
    """Samples the memory of a process and all its descendants every 20 ms and keeps the peak: the sum of
    their proportional set sizes (PSS: a page shared by forked workers counts once, split among them;
    a sum of RSS would count it once per worker)."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            total = 0
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in processes:
                with suppress(psutil.Error):
                    total += process.memory_full_info().pss
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_build(spec: dict[str, Any], code: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if code is not None:  # the other commit's demotrace first on the path
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(spec)], env=env, stdout=subprocess.PIPE, text=True
    )
    sampler = TreeRss(process.pid)
    stdout, _ = process.communicate()
    peak = sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"build {spec} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss"] = peak
    return result


@contextmanager
def worktree_of(ref: str) -> Iterator[Path]:
    """The code of commit ``ref``, checked out in a temporary git worktree for the run."""
    folder = Path(tempfile.mkdtemp(prefix="demotrace-bench-before-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )


# --- checks on the outputs ----------------------------------------------------------------------------


def dataset_files(out: Path) -> dict[str, bytes]:
    """Every file of a dataset; report.html with matplotlib's random SVG ids renumbered in order, and
    manifest.json without the build's time (as the tests compare them)."""
    sys.path.insert(0, str(REPO))
    from tests.test_distributed import dataset_files as comparable_files

    files: dict[str, bytes] = comparable_files(out)
    return files


def same_dataset(first: Path, second: Path) -> bool:
    return dataset_files(first) == dataset_files(second)


def same_pixels(before: Path, after: Path) -> tuple[int, int]:
    """How many of the images in ``before/images`` decode to exactly the pixels of ``after``'s."""
    import numpy
    from PIL import Image

    names = sorted(path.name for path in (before / "images").iterdir())
    same = 0
    for name in names:
        with Image.open(before / "images" / name) as old, Image.open(after / "images" / name) as new:
            same += numpy.array_equal(numpy.asarray(old.convert("RGB")), numpy.asarray(new.convert("RGB")))
    return same, len(names)


# --- the image encodings, on the recorded frames ------------------------------------------------------


def compare_encodings(collector: Path, console: Console) -> None:
    import io
    import zlib

    import numpy
    from PIL import Image

    from demotrace.collector.reader import CollectorReader
    from demotrace.frames.resolver import FrameResolver

    with CollectorReader(collector) as reader:
        frames = {frame.frame_id: frame for frame in reader.iter_frames()}
    table = Table(title=f"image encodings on {len(frames)} real 1920x1080 frames (CPU per frame)")
    for column in ("encoding", "what is timed", "ms/frame", "KB/frame"):
        table.add_column(column, justify="left" if column in ("encoding", "what is timed") else "right")
    for level in (1, 4, 6, 9):
        resolver = FrameResolver(frames.get, png_level=level)
        started, size = time.process_time(), 0
        for frame_id in frames:
            resolved = resolver.resolve(frame_id)
            size += len(resolved.data) if resolved is not None else 0
        elapsed = time.process_time() - started
        table.add_row(
            f"banded PNG, zlib-ng {level}",
            "whole chain: load, apply, encode",
            *_figures(elapsed, size, len(frames)),
        )
    images = [image for image in map(FrameResolver(frames.get).image, frames) if image is not None][::4]

    def pillow(image: Image.Image, **options: Any) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, **options)
        return buffer.getvalue()

    candidates: list[tuple[str, Any]] = [
        ("Pillow PNG level 6 (before)", lambda image: pillow(image, format="PNG", compress_level=6)),
        ("Pillow PNG level 1", lambda image: pillow(image, format="PNG", compress_level=1)),
        (
            "WebP lossless effort 0, method 0",
            lambda image: pillow(image, format="WEBP", lossless=True, quality=0, method=0),
        ),
        (
            "WebP lossless effort 25, method 2",
            lambda image: pillow(image, format="WEBP", lossless=True, quality=25, method=2),
        ),
        (
            "zlib 1, filter none (whole image)",
            lambda image: zlib.compress(
                numpy.insert(numpy.asarray(image).reshape(image.height, -1), 0, 0, axis=1).tobytes(), 1
            ),
        ),
    ]
    for name, encode in candidates:
        started, size = time.process_time(), 0
        for image in images:
            size += len(encode(image))
        table.add_row(
            name, "encode of a whole frame", *_figures(time.process_time() - started, size, len(images))
        )
    console.print(table)


def _figures(seconds: float, size: int, count: int) -> tuple[str, str]:
    return f"{seconds / count * 1000:.1f}", f"{size / count / 1000:.1f}"


# --- the run ------------------------------------------------------------------------------------------


def _print_per_core_ratios(runs: list[tuple[str, int, int, dict[str, Any]]], console: Console) -> None:
    """Ray's steps per core (wall) and per CPU-second over the local engine's with as many cores."""
    local = {cores: result for label, _, cores, result in runs if label.startswith("after, local")}
    for label, _, cores, result in runs:
        base = local.get(cores)
        if "ray_start" not in result or base is None:
            continue
        wall = (result["steps"] / result["wall"]) / (base["steps"] / base["wall"])
        cpu = (result["steps"] / result["cpu"]) / (base["steps"] / base["cpu"])
        console.print(
            f"{label} / local with {cores} core(s), per core: {wall:.2f} in wall time, "
            f"{cpu:.2f} per CPU-second"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=180, help="length of the recorded demo session")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=8, help="sessions of the fleet")
    parser.add_argument(
        "--large", type=int, default=24, help="sessions of the larger fleet (is memory flat?)"
    )
    parser.add_argument("--cores", type=int, default=2, help="cores for the pool and for Ray")
    parser.add_argument("--before", metavar="REF", help="also build with the code of this commit")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument(
        "--ray-data", action="store_true", help="also the Ray Data engine (the driver reads every batch)"
    )
    parser.add_argument(
        "--records",
        action="store_true",
        help="also the pool fed from every batch read up front (the engine before reading by session)",
    )
    parser.add_argument("--encodings", action="store_true", help="compare image encodings and stop")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the recording is kept")
    parser.add_argument("--out", type=Path, default=None, help="keep spools and datasets here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    console = Console()
    if not console.is_terminal:  # a log file: wide enough for the table
        console = Console(width=150)
    collector = recorded_session(args.cache, args.seconds, args.seed, console)
    if args.encodings:
        compare_encodings(collector, console)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="demotrace-bench-build-"))
    fleets: dict[int, tuple[Path, Path, int]] = {}
    for sessions in sorted({args.sessions, args.large}):
        spool, key = out / f"spool-{sessions}", out / f"spool-{sessions}.key"
        fleets[sessions] = (spool, key, write_fleet(collector, sessions, spool, key))

    def spec(engine: str, sessions: int, cores: int, name: str) -> dict[str, Any]:
        spool, key, _ = fleets[sessions]
        return {
            "engine": engine,
            "spool": str(spool),
            "key": str(key),
            "out": str(out / name),
            "cores": cores,
        }

    runs: list[tuple[str, int, int, dict[str, Any]]] = []  # label, sessions, cores, result
    if args.before:
        with worktree_of(args.before) as code:
            result = run_build(spec("loader", args.sessions, 1, "before"), code)
            runs.append((f"before ({args.before}), local", args.sessions, 1, result))
    runs.append(
        (
            "after, local, 1 process",
            args.sessions,
            1,
            run_build(spec("local", args.sessions, 1, "local-1"), None),
        )
    )
    for sessions in sorted({args.sessions, args.large}):
        name = f"local-pool-{sessions}"
        result = run_build(spec("local", sessions, args.cores, name), None)
        runs.append((f"after, local, pool of {args.cores}", sessions, args.cores, result))
    if args.records:
        for sessions in sorted({args.sessions, args.large}):
            result = run_build(spec("local-records", sessions, args.cores, f"records-{sessions}"), None)
            runs.append((f"records read up front, pool of {args.cores}", sessions, args.cores, result))
    if not args.no_ray:
        for cores in sorted({1, args.cores}):
            result = run_build(spec("ray", args.sessions, cores, f"ray-{cores}"), None)
            runs.append((f"after, ray, {cores} CPU (2nd build)", args.sessions, cores, result))
        if args.ray_data:
            result = run_build(spec("ray-data", args.sessions, args.cores, "ray-data"), None)
            runs.append((f"ray data, {args.cores} CPUs (2nd build)", args.sessions, args.cores, result))

    table = Table(
        title=f"dataset build, all formats, real 1920x1080 frames ({args.seconds} s demo session x N)"
    )
    for column in (
        "build",
        "sessions",
        "steps",
        "cores",
        "wall s",
        "steps/s per core",
        "steps per CPU-s",
        "peak PSS MB",
        "in MB/s",
        "out MB/s",
    ):
        table.add_column(column, justify="left" if column == "build" else "right")
    for label, sessions, cores, result in runs:
        wall, steps = result["wall"], result["steps"]
        cpu = result.get("cpu")
        table.add_row(
            label,
            str(sessions),
            str(steps),
            str(cores),
            f"{wall:.2f}",
            f"{steps / wall / cores:.0f}",
            f"{steps / cpu:.0f}" if cpu else "-",
            f"{result['peak_rss'] / 1e6:.0f}",
            f"{fleets[sessions][2] / 1e6 / wall:.1f}",
            f"{result['out_bytes'] / 1e6 / wall:.1f}",
        )
    console.print(table)
    for label, _, _, result in runs:
        if "ray_start" in result:
            phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result.get("phases", {}).items())
            console.print(
                f"{label}: ray.init {result['ray_start']:.1f} s, 1st build {result['wall_cold']:.2f} s "
                f"(neither in the table); 2nd build's phases (s): {phases or '-'}"
            )
    _print_per_core_ratios(runs, console)
    ok = True
    checks = [
        (
            "local 1 process",
            out / "local-1",
            f"local pool of {args.cores}",
            out / f"local-pool-{args.sessions}",
        )
    ]
    if not args.no_ray:
        pool = out / f"local-pool-{args.sessions}"
        for cores in sorted({1, args.cores}):
            checks.append((f"local pool of {args.cores}", pool, f"ray {cores} CPU", out / f"ray-{cores}"))
        if args.ray_data:
            checks.append((f"local pool of {args.cores}", pool, "ray data", out / "ray-data"))
    for first_label, first, second_label, second in checks:
        same = same_dataset(first, second)
        ok = ok and same
        console.print(f"every output file byte-identical, {first_label} vs {second_label}: {same}")
    if args.before:
        identical, total = same_pixels(out / "before", out / "local-1")
        ok = ok and identical == total
        before, after = runs[0][3], runs[1][3]
        console.print(
            f"images pixel-identical to {args.before}'s: {identical} of {total}; image bytes "
            f"{before['image_bytes'] / 1e6:.1f} MB before, {after['image_bytes'] / 1e6:.1f} MB after"
        )
        console.print(
            f"one core, after / before: {before['cpu'] / after['cpu']:.1f}x the steps per CPU-second, "
            f"{before['wall'] / after['wall']:.1f}x the steps per second of wall time"
        )
    for kind in ("after, local, pool", "records read up front, pool"):
        pools = [(sessions, result) for label, sessions, _, result in runs if label.startswith(kind)]
        if len(pools) == 2:
            (small, first), (large, second) = pools
            console.print(
                f"{kind}: peak memory (PSS of the process tree) {first['peak_rss'] / 1e6:.0f} MB with "
                f"{small} sessions, {second['peak_rss'] / 1e6:.0f} MB with {large}: "
                f"{large} / {small} = {second['peak_rss'] / first['peak_rss']:.2f}"
            )
    console.print(f"(spools and datasets in {out})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
