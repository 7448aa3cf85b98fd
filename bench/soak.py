"""Soak: a dense scripted session for a bounded time, with the resident memory and open file
descriptors of the recorder and of the collector sampled every 10 s; prints their slopes per hour.

Everything real and separate, as in the demo: Xvfb + openbox with the demo apps, `demotrace server`,
`demotrace record` (its whole process tree: the OCR workers too). The scripted session runs with the
pauses between actions shortened (``--gap-scale``), so an hour of wall time holds several hours of a
person's actions; the figures are also given per working day of actions (4,800: 600 an hour for 8 h,
demo/working_day.py). ``--devices N`` adds N synthetic devices that each upload a working
day of records (demo/working_day.py) spread over the run, so the collector is soaked too.

Slopes are least-squares fits over the samples, for the whole run and for its second half (after the
caches and the OCR workers have warmed up); a leak shows as a steady positive slope in both.

    .venv/bin/python -m bench.soak --minutes 20
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import (
    demo_fleet_policy,
    free_port,
    start_collector,
    start_recorder,
    stop_process,
)
from demotrace.demo.run import set_fleet_policy as put_fleet_policy
from demotrace.demo.working_day import WorkingDay, working_day

MiB = 1024 * 1024
ACTIONS_PER_WORKING_DAY = WorkingDay().actions


@dataclass
class Sample:
    seconds: float  # since the start of the run
    recorder_rss: int
    recorder_fds: int
    collector_rss: int
    collector_fds: int


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    actions: int = 0
    records_uploaded: str = ""
    synthetic_records: int = 0
    recorder_exit: int | None = None


def tree_usage(pid: int) -> tuple[int, int]:
    """Resident bytes and open file descriptors of a process and all its descendants."""
    rss = fds = 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for process in processes:
        try:
            rss += process.memory_info().rss
            fds += process.num_fds()
        except psutil.NoSuchProcess:
            continue  # a worker that ended between the listing and the reading
    return rss, fds


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 3600


def _synthetic_device(url: str, folder: Path, seconds: float, seed: int, stop: threading.Event) -> int:
    """A device that writes a working day of records into its spool over ``seconds``; its uploader
    sends them as they come. Returns how many it wrote."""
    from demotrace.device.enrollment import enroll
    from demotrace.device.spool import Spool
    from demotrace.device.uploader import Uploader

    spool = Spool(folder, os.urandom(32))
    uploader = Uploader(spool, enroll(url, f"soak-{seed}"), backoff_initial=0.2, backoff_max=2.0)
    uploader.start()
    records = list(working_day(WorkingDay(), seed))
    pause = seconds / len(records)
    written = 0
    try:
        for record in records:
            if stop.wait(pause):
                break
            spool.append([record])
            written += 1
    finally:
        uploader.stop(flush=True, timeout=30)
        spool.close()
    return written


def run_soak(
    out: Path, minutes: float, sample_seconds: float, gap_scale: float, devices: int, seed: int = 1
) -> SoakResult:
    from demotrace.demo.script import run_scripted_session, start_demo_apps

    result = SoakResult()
    duration = minutes * 60
    stop = threading.Event()
    injected: list[int] = []
    with VirtualDesktop() as desktop:
        apps = start_demo_apps(desktop, out / "app-state.json")
        admin_token = secrets.token_urlsafe(24)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        collector, _ = start_collector(out / "collector", port, admin_token)
        put_fleet_policy(url, admin_token, demo_fleet_policy())
        recorder, recorder_output = start_recorder(
            desktop.display, out / "spool", out / "spool.key", out / "device.json", url, accept_notice=True
        )
        counts: list[int] = []
        threads = [
            threading.Thread(
                target=lambda n=n: counts.append(
                    _synthetic_device(url, out / f"device-{n}", duration, seed + n, stop)
                ),
                daemon=True,
            )
            for n in range(devices)
        ]
        driver = threading.Thread(
            target=lambda: injected.append(
                len(run_scripted_session(desktop.display, seed=seed, app_state_file=out / "app-state.json",
                                         stop=stop, gap_scale=gap_scale))
            ),
            daemon=True,
        )  # fmt: skip
        try:
            for thread in [driver, *threads]:
                thread.start()
            started = time.monotonic()
            while True:
                elapsed = time.monotonic() - started
                recorder_rss, recorder_fds = tree_usage(recorder.pid)
                collector_rss, collector_fds = tree_usage(collector.pid)
                result.samples.append(
                    Sample(elapsed, recorder_rss, recorder_fds, collector_rss, collector_fds)
                )
                if elapsed >= duration or recorder.poll() is not None:
                    break
                time.sleep(min(sample_seconds, max(0.0, duration - elapsed)))
        finally:
            stop.set()
            driver.join(120)
            for thread in threads:
                thread.join(120)
            result.recorder_exit = stop_process(recorder)
            stop_process(collector)
            apps.stop()
    result.actions = injected[0] if injected else 0
    result.synthetic_records = sum(counts)
    result.records_uploaded = next(
        (line for line in recorder_output.lines if line.startswith("uploaded ")), "uploaded: (no line)"
    )
    return result


def _report(result: SoakResult) -> None:
    samples = result.samples
    half = [sample for sample in samples if sample.seconds >= samples[-1].seconds / 2]
    hours = samples[-1].seconds / 3600 if samples else 0.0
    days = result.actions / ACTIONS_PER_WORKING_DAY
    print(
        f"{len(samples)} samples over {samples[-1].seconds / 60:.1f} min; {result.actions} actions injected"
        f" ({result.actions / max(hours, 1e-9):.0f} an hour, {days:.2f} of a working day of"
        f" {ACTIONS_PER_WORKING_DAY}); recorder {result.records_uploaded}, exit {result.recorder_exit};"
        f" {result.synthetic_records} records from synthetic devices"
    )
    for name in ("recorder", "collector"):

        def points(
            chosen: list[Sample], what: str, scale: float = 1.0, name: str = name
        ) -> list[tuple[float, float]]:
            return [(sample.seconds, getattr(sample, f"{name}_{what}") / scale) for sample in chosen]

        rss = [getattr(sample, f"{name}_rss") / MiB for sample in samples]
        fds = [getattr(sample, f"{name}_fds") for sample in samples]
        rss_slope, rss_late = (
            slope_per_hour(points(samples, "rss", MiB)),
            slope_per_hour(points(half, "rss", MiB)),
        )
        fds_slope, fds_late = slope_per_hour(points(samples, "fds")), slope_per_hour(points(half, "fds"))
        per_day = (rss_late * hours / days) if days else 0.0
        print(
            f"{name}: RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB (peak {max(rss):.0f}),"
            f" slope {rss_slope:+.1f} MiB/h"
            f" (second half {rss_late:+.1f} MiB/h, {per_day:+.1f} MiB per working day of actions);"
            f" fds {fds[0]} -> {fds[-1]} (peak {max(fds)}), slope {fds_slope:+.1f}/h"
            f" (second half {fds_late:+.1f}/h)"
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall time of the soak")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--gap-scale", type=float, default=0.2, help="pauses between actions x this")
    parser.add_argument("--devices", type=int, default=2, help="synthetic devices uploading a day each")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dt-soak-") as folder:
        result = run_soak(
            Path(folder), args.minutes, args.sample_seconds, args.gap_scale, args.devices, args.seed
        )
    _report(result)


if __name__ == "__main__":
    main()
