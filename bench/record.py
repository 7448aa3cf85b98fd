"""Measure the recorder on the demo's scripted session, and the usual alternative in the same run.

    .venv/bin/python bench/record.py --seconds 120            # demotrace, then the baseline
    .venv/bin/python bench/record.py --seconds 120 --no-baseline

Each run gets a fresh Xvfb (1920x1080) + openbox, our Tk app and an xterm, and the same seeded
scripted session. demotrace runs as in the field: a collector and `demotrace record --server` as real
processes. The baseline is what OBS-style recorders do: ffmpeg x11grab H.264 at 30 fps plus a JSONL
input log (bench/baseline.py). CPU and memory come from /proc through psutil; the recorder reports
its own input-callback latency on exit. An idle span with no input follows each session.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import BaselineRecorder

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import (
    demo_fleet_policy,
    folder_bytes,
    free_port,
    start_collector_with_policy,
    start_recorder,
    stop_process,
)
from demotrace.demo.script import run_scripted_session, start_demo_apps


@dataclass
class Figures:
    name: str
    active_seconds: float
    actions: int
    cpu_seconds: float
    idle_cpu_seconds: float
    idle_wakeups: int
    peak_rss: int
    bytes_stored: int
    bytes_uploaded: int | None = None
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    scrub_cpu_seconds: float = 0.0  # OCR redaction of frames in the recorder's own threads
    ocr_child_cpu_seconds: float = 0.0  # the tesseract processes it ran (not in cpu_seconds)

    def per_minute(self, value: float) -> float:
        return value / (self.active_seconds / 60)

    def per_hour(self, value: float) -> float:
        return value * 3600 / self.active_seconds


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(float(p.cpu_times().user + p.cpu_times().system) for p in processes)


def context_switches(processes: list[psutil.Process]) -> int:
    return sum(p.num_ctx_switches().voluntary + p.num_ctx_switches().involuntary for p in processes)


def peak_rss_bytes(pid: int) -> int:
    # VmHWM is the kernel's own high-water mark: no sampling can miss the peak.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def drive(
    display: str, work: Path, processes: list[psutil.Process], seconds: float, idle: float, seed: int
) -> tuple[int, float, float, float, int]:
    """Run the scripted session, then an idle span; CPU of the given processes in each."""
    cpu_start = cpu_seconds(processes)
    started = time.monotonic()
    injected = run_scripted_session(
        display, seed=seed, seconds=seconds, app_state_file=work / "app-state.json"
    )
    active = time.monotonic() - started
    cpu_active = cpu_seconds(processes) - cpu_start
    time.sleep(3)  # let pending batches and uploads settle before the idle span
    idle_cpu_start, switches_start = cpu_seconds(processes), context_switches(processes)
    time.sleep(idle)
    idle_cpu = cpu_seconds(processes) - idle_cpu_start
    wakeups = context_switches(processes) - switches_start
    return len(injected), active, cpu_active, idle_cpu, wakeups


def measure_demotrace(seconds: float, idle: float, seed: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="demotrace-bench-") as tmp, VirtualDesktop() as desktop:
        work = Path(tmp)
        start_demo_apps(desktop, work / "app-state.json")
        port = free_port()
        collector, _, url = start_collector_with_policy(work / "collector", port, demo_fleet_policy())
        recorder, output = start_recorder(
            desktop.display, work / "spool", work / "spool.key", work / "device.json", url
        )
        process = psutil.Process(recorder.pid)
        children_before = process.cpu_times().children_user + process.cpu_times().children_system
        actions, active, cpu, idle_cpu, wakeups = drive(desktop.display, work, [process], seconds, idle, seed)
        children = process.cpu_times().children_user + process.cpu_times().children_system - children_before
        peak = peak_rss_bytes(recorder.pid)
        exit_code = stop_process(recorder)
        stop_process(collector)
        if exit_code != 0:
            raise SystemExit(f"recorder exited with {exit_code}:\n" + "\n".join(output.lines))
        text = "\n".join(output.lines)
        uploaded = re.search(r"uploaded (\d+) records, (\d+) bytes", text)
        latency = re.search(r"callback latency p50=([\d.]+) us p99=([\d.]+) us", text)
        scrub = re.search(r"screen scrub ([\d.]+) CPU-s", text)
        return Figures(
            name="demotrace",
            active_seconds=active,
            actions=actions,
            cpu_seconds=cpu,
            idle_cpu_seconds=idle_cpu,
            idle_wakeups=wakeups,
            peak_rss=peak,
            bytes_stored=folder_bytes(work / "spool"),
            bytes_uploaded=int(uploaded.group(2)) if uploaded else None,
            latency_p50_us=float(latency.group(1)) if latency else None,
            latency_p99_us=float(latency.group(2)) if latency else None,
            scrub_cpu_seconds=float(scrub.group(1)) if scrub else 0.0,
            ocr_child_cpu_seconds=children,
        )


def measure_baseline(seconds: float, idle: float, seed: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="demotrace-baseline-") as tmp, VirtualDesktop() as desktop:
        work = Path(tmp)
        start_demo_apps(desktop, work / "app-state.json")
        baseline = BaselineRecorder(desktop.display, work / "baseline")
        baseline.start()
        processes = [psutil.Process(pid) for pid in baseline.pids]
        actions, active, cpu, idle_cpu, wakeups = drive(desktop.display, work, processes, seconds, idle, seed)
        peak = sum(peak_rss_bytes(pid) for pid in baseline.pids)
        baseline.stop()
        return Figures(
            name="baseline (ffmpeg x11grab H.264 30 fps + JSONL input log)",
            active_seconds=active,
            actions=actions,
            cpu_seconds=cpu,
            idle_cpu_seconds=idle_cpu,
            idle_wakeups=wakeups,
            peak_rss=peak,
            bytes_stored=baseline.bytes_written(),
            bytes_uploaded=baseline.bytes_written(),  # it would upload everything it wrote
        )


def report(figures: Figures) -> None:
    mib = 2**20
    print(f"== {figures.name}")
    print(f"  session: {figures.active_seconds:.1f} s active, {figures.actions} actions injected")
    print(f"  CPU: {figures.per_minute(figures.cpu_seconds):.3f} CPU-s per active minute")
    if figures.scrub_cpu_seconds or figures.ocr_child_cpu_seconds:
        print(
            f"    of which screen-OCR preparation: {figures.per_minute(figures.scrub_cpu_seconds):.3f};"
            f" without it: {figures.per_minute(figures.cpu_seconds - figures.scrub_cpu_seconds):.3f}"
        )
        print(
            "  screen OCR (tesseract processes): "
            f"{figures.per_minute(figures.ocr_child_cpu_seconds):.3f} CPU-s per active minute"
        )
    print(f"  idle: {figures.idle_cpu_seconds:.3f} CPU-s, {figures.idle_wakeups} context switches")
    print(f"  peak RSS: {figures.peak_rss / mib:.1f} MiB")
    print(f"  stored: {figures.per_hour(figures.bytes_stored) / mib:.1f} MiB per active hour")
    if figures.bytes_uploaded is not None:
        print(f"  uploaded: {figures.per_hour(figures.bytes_uploaded) / mib:.1f} MiB per active hour")
    if figures.latency_p99_us is not None:
        print(
            f"  input callback latency: p50 {figures.latency_p50_us:.1f} us, "
            f"p99 {figures.latency_p99_us:.1f} us"
        )


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.3f}" if theirs else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the active session")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="length of the idle span")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true", help="measure demotrace only")
    args = parser.parse_args()

    ours = measure_demotrace(args.seconds, args.idle_seconds, args.seed)
    report(ours)
    if args.no_baseline:
        return
    theirs = measure_baseline(args.seconds, args.idle_seconds, args.seed)
    report(theirs)
    print("== demotrace / baseline (lower is better)")
    print(
        "  CPU per active minute: "
        f"{ratio(ours.per_minute(ours.cpu_seconds), theirs.per_minute(theirs.cpu_seconds))}"
    )
    print(f"  peak RSS: {ratio(ours.peak_rss, theirs.peak_rss)}")
    uploaded_ours = ours.per_hour(ours.bytes_uploaded or 0)
    print(f"  bytes uploaded per active hour: {ratio(uploaded_ours, theirs.per_hour(theirs.bytes_stored))}")
    print(
        "  bytes stored per active hour: "
        f"{ratio(ours.per_hour(ours.bytes_stored), theirs.per_hour(theirs.bytes_stored))}"
    )


if __name__ == "__main__":
    main()
