"""Measure the recorder on the demo's scripted session, and the usual alternative in the same run.

    .venv/bin/python bench/record.py --seconds 120            # demotrace, then the baseline
    .venv/bin/python bench/record.py --seconds 120 --no-baseline --no-battery

Each run gets a fresh Xvfb (1920x1080) + openbox, our Tk app and an xterm, and the same seeded
scripted session. demotrace runs as in the field: a collector and `demotrace record --server` as real
processes. The baseline is what OBS-style recorders do: ffmpeg x11grab H.264 at 30 fps plus a JSONL
input log (bench/baseline.py). CPU and memory come from /proc through psutil; the recorder reports
its own input-callback latency on exit. An idle span with no input follows each session.

The battery run (skip it with --no-battery) records the same session once more with the recorder seeing a
discharging battery (bench/battery.py): the fleet policy defers screen OCR on battery, so frames are held
encrypted and scrubbed once the charger is back in; that later work is measured apart, after the session.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import BaselineRecorder
from battery import FakeBattery, wait_until_quiet
from process_tree import (
    RssSampler,
    TreeSampler,
    context_switches,
    cpu_by_thread,
    cpu_seconds,
    cpu_with_children,
    ocr_workers,
    peak_rss_bytes,
    rss_kinds,
    rss_trend_per_10_minutes,
    summed_tree_peak,
    thread_cpu_seconds,
    tree_cpu,
)

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
from demotrace.threads import OS_NAME_PREFIX

OCR_THREAD_PREFIX = OS_NAME_PREFIX + "ocr"  # the recorder's OCR thread and the deferred scrub worker


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
    callback_cpu_p50_us: float | None = None  # the callbacks' own CPU time, OS preemption left out
    callback_cpu_p99_us: float | None = None
    ocr_thread_cpu_seconds: float = 0.0  # the recorder's OCR thread (dt-ocr*): in cpu_seconds
    ocr_child_cpu_seconds: float = 0.0  # the tesseract processes it ran (not in cpu_seconds)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes)
    cpu_by_thread: dict[str, float] = field(default_factory=dict)  # OS thread name → CPU-s in the run
    ocr_worker_peak_rss: int = 0  # the OCR worker process, apart from the recorder's own
    grab_waits: str | None = None  # grabs that waited for a frame in flight to go (bursts)
    rss_kinds: dict[str, str] = field(default_factory=dict)  # process → its resident set by kind, at the end
    tree_cpu_seconds: float = 0.0  # recorder + OCR worker(s) + any engine process: what the user pays
    tree_peak_rss: int = 0  # the peaks of every process of the tree, summed
    worker_cpu_seconds: float = 0.0  # the OCR worker(s) alone
    engine_peak_rss: int = 0  # the largest child that ended during the run (tesseract CLI...), sampled
    ended_children: int = 0  # children that ended during the run, each counted at its sampled peak
    # On battery: the frames' OCR deferred to mains power, run once the charger is back in.
    deferred_cpu_seconds: float | None = None
    deferred_wait_seconds: float = 0.0
    tree_peak_rss_after_deferred: int = 0

    def per_minute(self, value: float) -> float:
        return value / (self.active_seconds / 60)

    def per_hour(self, value: float) -> float:
        return value * 3600 / self.active_seconds


@dataclass
class Drive:
    actions: int
    active_seconds: float
    cpu_seconds: float  # from the session's start to the end of the idle span: all its work
    idle_cpu_seconds: float
    idle_wakeups: int


def drive(
    display: str, work: Path, processes: list[psutil.Process], seconds: float, idle: float, seed: int
) -> Drive:
    """Run the scripted session, let its work finish, then an idle span; CPU of the given processes.

    The CPU is counted until the end of the idle span, so work the session queued (OCR, encoding,
    uploads) is in it however late it runs; it is divided by the active minutes only."""
    cpu_start = cpu_seconds(processes)
    started = time.monotonic()
    injected = run_scripted_session(
        display, seed=seed, seconds=seconds, app_state_file=work / "app-state.json"
    )
    active = time.monotonic() - started
    time.sleep(3)  # let pending batches and uploads settle before the idle span
    idle_cpu_start, switches_start = cpu_seconds(processes), context_switches(processes)
    time.sleep(idle)
    idle_end = cpu_seconds(processes)
    wakeups = context_switches(processes) - switches_start
    return Drive(len(injected), active, idle_end - cpu_start, idle_end - idle_cpu_start, wakeups)


def measure_demotrace(seconds: float, idle: float, seed: int, battery: FakeBattery | None = None) -> Figures:
    with tempfile.TemporaryDirectory(prefix="demotrace-bench-") as tmp, VirtualDesktop() as desktop:
        work = Path(tmp)
        start_demo_apps(desktop, work / "app-state.json")
        port = free_port()
        collector, _, url = start_collector_with_policy(work / "collector", port, demo_fleet_policy())
        recorder, output = start_recorder(
            desktop.display,
            work / "spool",
            work / "spool.key",
            work / "device.json",
            url,
            accept_notice=True,
            prefix=battery.prefix if battery is not None else (),
        )
        process = psutil.Process(recorder.pid)
        children_before = process.cpu_times().children_user + process.cpu_times().children_system
        workers_before = cpu_with_children(ocr_workers(process))
        tree_before = tree_cpu(process)
        ocr_before = thread_cpu_seconds(recorder.pid, OCR_THREAD_PREFIX)
        threads_before = cpu_by_thread(recorder.pid)
        with RssSampler(recorder.pid) as rss, TreeSampler(process) as tree_rss:
            driven = drive(desktop.display, work, [process], seconds, idle, seed)
        ocr_threads = thread_cpu_seconds(recorder.pid, OCR_THREAD_PREFIX) - ocr_before
        by_thread = {
            name: seconds - threads_before.get(name, 0.0)
            for name, seconds in cpu_by_thread(recorder.pid).items()
        }
        workers = ocr_workers(process)
        workers_after = cpu_with_children(workers)
        children = process.cpu_times().children_user + process.cpu_times().children_system - children_before
        children += sum(cpu - workers_before.get(pid, 0.0) for pid, cpu in workers_after.items())
        worker_peak = max((peak_rss_bytes(worker.pid) for worker in workers), default=0)
        peak = peak_rss_bytes(recorder.pid)
        tree_after = tree_cpu(process)
        tree_cpu_seconds = sum(cpu - tree_before.get(pid, 0.0) for pid, cpu in tree_after.items())
        live = [process, *process.children(recursive=True)]
        ended = tree_rss.ended({member.pid for member in live})
        tree_peak = summed_tree_peak(process, tree_rss)
        deferred_cpu, waited, peak_after = None, 0.0, 0
        if battery is not None:
            # Charger back in: the held frames are scrubbed now; that work is what battery mode moved.
            battery.plug_in()
            with TreeSampler(process) as after_rss:
                waited = wait_until_quiet(lambda: sum(tree_cpu(process).values()), at_least=65.0)
            deferred_cpu = sum(tree_cpu(process).values()) - sum(tree_after.values())
            peak_after = summed_tree_peak(process, after_rss)
        worker_cpu = sum(cpu - workers_before.get(pid, 0.0) for pid, cpu in workers_after.items())
        kinds = {"recorder": rss_kinds(process.pid)}
        kinds.update({f"OCR worker {worker.pid}": rss_kinds(worker.pid) for worker in workers})
        exit_code = stop_process(recorder)
        stop_process(collector)
        if exit_code != 0:
            raise SystemExit(f"recorder exited with {exit_code}:\n" + "\n".join(output.lines))
        text = "\n".join(output.lines)
        uploaded = re.search(r"uploaded (\d+) records, (\d+) bytes", text)
        latency = re.search(r"callback latency p50=([\d.]+) us p99=([\d.]+) us", text)
        own_cpu = re.search(r"own CPU p50=([\d.]+) us p99=([\d.]+) us", text)
        grab_waits = re.search(r"(\d+ grabs?) waited ([\d.]+ s)", text)
        return Figures(
            name="demotrace",
            active_seconds=driven.active_seconds,
            actions=driven.actions,
            cpu_seconds=driven.cpu_seconds,
            idle_cpu_seconds=driven.idle_cpu_seconds,
            idle_wakeups=driven.idle_wakeups,
            peak_rss=peak,
            bytes_stored=folder_bytes(work / "spool"),
            bytes_uploaded=int(uploaded.group(2)) if uploaded else None,
            latency_p50_us=float(latency.group(1)) if latency else None,
            latency_p99_us=float(latency.group(2)) if latency else None,
            callback_cpu_p50_us=float(own_cpu.group(1)) if own_cpu else None,
            callback_cpu_p99_us=float(own_cpu.group(2)) if own_cpu else None,
            ocr_thread_cpu_seconds=ocr_threads,
            ocr_child_cpu_seconds=children,
            rss_samples=rss.samples,
            cpu_by_thread=by_thread,
            ocr_worker_peak_rss=worker_peak,
            grab_waits=f"{grab_waits.group(1)}, {grab_waits.group(2)} in all" if grab_waits else None,
            tree_cpu_seconds=tree_cpu_seconds,
            tree_peak_rss=tree_peak,
            worker_cpu_seconds=worker_cpu,
            engine_peak_rss=max((rss for _, rss in ended), default=0),
            ended_children=len(ended),
            rss_kinds=kinds,
            deferred_cpu_seconds=deferred_cpu,
            deferred_wait_seconds=waited,
            tree_peak_rss_after_deferred=peak_after,
        )


def measure_baseline(seconds: float, idle: float, seed: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="demotrace-baseline-") as tmp, VirtualDesktop() as desktop:
        work = Path(tmp)
        start_demo_apps(desktop, work / "app-state.json")
        baseline = BaselineRecorder(desktop.display, work / "baseline")
        baseline.start()
        processes = [psutil.Process(pid) for pid in baseline.pids]
        driven = drive(desktop.display, work, processes, seconds, idle, seed)
        peak = sum(peak_rss_bytes(pid) for pid in baseline.pids)
        baseline.stop()
        return Figures(
            name="baseline (ffmpeg x11grab H.264 30 fps + JSONL input log)",
            active_seconds=driven.active_seconds,
            actions=driven.actions,
            cpu_seconds=driven.cpu_seconds,
            idle_cpu_seconds=driven.idle_cpu_seconds,
            idle_wakeups=driven.idle_wakeups,
            peak_rss=peak,
            bytes_stored=baseline.bytes_written(),
            bytes_uploaded=baseline.bytes_written(),  # it would upload everything it wrote
            tree_cpu_seconds=driven.cpu_seconds,
            tree_peak_rss=peak,
        )


def report(figures: Figures) -> None:
    mib = 2**20
    print(f"== {figures.name}")
    print(f"  session: {figures.active_seconds:.1f} s active, {figures.actions} actions injected")
    print(
        f"  WHOLE PROCESS TREE: {figures.per_minute(figures.tree_cpu_seconds):.3f} CPU-s per active minute,"
        f" summed peak RSS {figures.tree_peak_rss / 2**20:.1f} MiB"
    )
    if figures.deferred_cpu_seconds is not None:
        print(
            f"    then on mains again, the deferred scrub of the held frames:"
            f" {figures.per_minute(figures.deferred_cpu_seconds):.3f} CPU-s per active minute of the session"
            f" ({figures.deferred_cpu_seconds:.1f} CPU-s in {figures.deferred_wait_seconds:.0f} s, 60 s of"
            f" it waiting for the power watcher); summed peak RSS with it"
            f" {figures.tree_peak_rss_after_deferred / 2**20:.1f} MiB"
        )
    if figures.worker_cpu_seconds or figures.engine_peak_rss:
        print(
            f"    of which the OCR worker process(es): {figures.per_minute(figures.worker_cpu_seconds):.3f}"
            f" CPU-s per active minute (with any engine process it ran), peak RSS"
            f" {figures.ocr_worker_peak_rss / 2**20:.1f} MiB; {figures.ended_children} short-lived"
            f" children (the largest {figures.engine_peak_rss / 2**20:.1f} MiB)"
        )
    recorder_cpu = figures.cpu_seconds - figures.ocr_thread_cpu_seconds
    if figures.ocr_thread_cpu_seconds or figures.ocr_child_cpu_seconds:
        recorder_per_minute = figures.per_minute(recorder_cpu)
        print(f"  CPU, recorder without screen OCR: {recorder_per_minute:.3f} CPU-s per active minute")
        print(
            f"  CPU, screen OCR: {figures.per_minute(figures.ocr_thread_cpu_seconds):.3f} in its thread"
            f" + {figures.per_minute(figures.ocr_child_cpu_seconds):.3f} in OCR processes"
            " = "
            f"{figures.per_minute(figures.ocr_thread_cpu_seconds + figures.ocr_child_cpu_seconds):.3f}"
            " CPU-s per active minute"
        )
        print(
            "    (OCR thread: finds the changed text lines, sends them to the OCR worker process, decides"
            " and paints the boxes; OCR processes: the worker, which reads the lines, and any Tesseract"
            " runs it waited for)"
        )
    else:
        print(f"  CPU: {figures.per_minute(figures.cpu_seconds):.3f} CPU-s per active minute")
    if figures.cpu_by_thread:
        busiest = sorted(figures.cpu_by_thread.items(), key=lambda item: -item[1])[:8]
        shown = ", ".join(f"{name} {figures.per_minute(seconds):.2f}" for name, seconds in busiest)
        print(f"    by thread (CPU-s per active minute): {shown}")
    print(f"  idle: {figures.idle_cpu_seconds:.3f} CPU-s, {figures.idle_wakeups} context switches")
    print(f"  peak RSS: {figures.peak_rss / mib:.1f} MiB")
    if figures.ocr_worker_peak_rss:
        print(f"  peak RSS of the OCR worker process: {figures.ocr_worker_peak_rss / mib:.1f} MiB")
    if figures.grab_waits is not None:
        print(f"  grabs that waited for a frame in flight to be encoded (bursts): {figures.grab_waits}")
    for name, kinds in figures.rss_kinds.items():
        print(f"  resident at the end, {name}: {kinds}")
    if figures.rss_samples:
        resident = [r for _, r in figures.rss_samples]
        print(
            f"  RSS sampled every second: first {resident[0] / mib:.1f}, last {resident[-1] / mib:.1f},"
            f" max {max(resident) / mib:.1f} MiB"
            f" (at {figures.rss_samples[resident.index(max(resident))][0]:.0f} s);"
            f" trend {rss_trend_per_10_minutes(figures.rss_samples) / mib:+.1f} MiB per 10 min"
            f" ({rss_trend_per_10_minutes(figures.rss_samples[len(figures.rss_samples) // 2 :]) / mib:+.1f}"
            " over the second half)"
        )
        fifths = [resident[len(resident) * part // 5 : len(resident) * (part + 1) // 5] for part in range(5)]
        medians = ", ".join(f"{statistics.median(fifth) / mib:.1f}" for fifth in fifths if fifth)
        print(f"  RSS median in each fifth of the session: {medians} MiB")
    print(f"  stored: {figures.per_hour(figures.bytes_stored) / mib:.1f} MiB per active hour")
    if figures.bytes_uploaded is not None:
        print(f"  uploaded: {figures.per_hour(figures.bytes_uploaded) / mib:.1f} MiB per active hour")
    if figures.latency_p99_us is not None:
        print(
            "  input callback latency (wall clock, OS preemption included):"
            f" p50 {figures.latency_p50_us:.1f} us, p99 {figures.latency_p99_us:.1f} us"
        )
    if figures.callback_cpu_p99_us is not None:
        print(
            f"  input callback's own work (its thread's CPU time): p50 {figures.callback_cpu_p50_us:.1f} us,"
            f" p99 {figures.callback_cpu_p99_us:.1f} us"
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
    parser.add_argument("--no-battery", action="store_true", help="skip the run on (simulated) battery")
    args = parser.parse_args()

    ours = measure_demotrace(args.seconds, args.idle_seconds, args.seed)
    report(ours)
    if not args.no_battery:
        with FakeBattery() as battery:
            on_battery = measure_demotrace(args.seconds, args.idle_seconds, args.seed, battery)
        on_battery.name = "demotrace on battery (80 %, charger out; policy defers screen OCR to mains)"
        report(on_battery)
        print("== demotrace on battery / on mains (lower is better)")
        battery_cpu = on_battery.per_minute(on_battery.tree_cpu_seconds)
        print(
            "  WHOLE PROCESS TREE during the session, CPU per active minute:"
            f" {ratio(battery_cpu, ours.per_minute(ours.tree_cpu_seconds))};"
            f" summed peak RSS: {ratio(on_battery.tree_peak_rss, ours.tree_peak_rss)}"
        )
    if args.no_baseline:
        return
    theirs = measure_baseline(args.seconds, args.idle_seconds, args.seed)
    report(theirs)
    print("== demotrace / baseline (lower is better)")
    theirs_cpu = theirs.per_minute(theirs.cpu_seconds)
    print(
        "  WHOLE PROCESS TREE, CPU per active minute:"
        f" {ratio(ours.per_minute(ours.tree_cpu_seconds), theirs_cpu)};"
        f" summed peak RSS: {ratio(ours.tree_peak_rss, theirs.tree_peak_rss)}"
    )
    ours_cpu = ours.per_minute(ours.cpu_seconds - ours.ocr_thread_cpu_seconds)
    ours_with_ocr = ours.per_minute(ours.cpu_seconds + ours.ocr_child_cpu_seconds)
    print(f"  CPU per active minute, without screen OCR: {ratio(ours_cpu, theirs_cpu)}")
    print(f"  CPU per active minute, with screen OCR: {ratio(ours_with_ocr, theirs_cpu)}")
    print(f"  peak RSS: {ratio(ours.peak_rss, theirs.peak_rss)}")
    uploaded_ours = ours.per_hour(ours.bytes_uploaded or 0)
    print(f"  bytes uploaded per active hour: {ratio(uploaded_ours, theirs.per_hour(theirs.bytes_stored))}")
    print(
        "  bytes stored per active hour: "
        f"{ratio(ours.per_hour(ours.bytes_stored), theirs.per_hour(theirs.bytes_stored))}"
    )


if __name__ == "__main__":
    main()
