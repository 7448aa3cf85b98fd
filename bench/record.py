"""Measure the recorder on the demo's scripted session: CPU, memory, bytes, input-callback latency.

    .venv/bin/python bench/record.py --seconds 120

Runs Xvfb (1920x1080) + openbox, our Tk app and an xterm, a collector and the recorder as real processes,
drives the scripted session for N seconds, then prints figures. The recorder's CPU and memory are read
from /proc through psutil; its callback latency is what it reports on exit. Also measures an idle span
(no input) to show the recorder does no work while the user is idle.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import psutil

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import folder_bytes, free_port, start_collector, start_recorder, stop_process
from demotrace.demo.script import run_scripted_session, start_demo_apps


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def peak_rss_bytes(pid: int) -> int:
    # VmHWM is the kernel's own high-water mark: no sampling can miss the peak.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the active session")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="length of the idle span")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="demotrace-bench-") as tmp, VirtualDesktop() as desktop:
        work = Path(tmp)
        start_demo_apps(desktop, work / "app-state.json")
        port = free_port()
        collector, _ = start_collector(work / "collector", port)
        recorder, output = start_recorder(
            desktop.display,
            work / "spool",
            work / "spool.key",
            work / "device.json",
            f"http://127.0.0.1:{port}",
        )
        process = psutil.Process(recorder.pid)
        cpu_at_start = cpu_seconds(process)

        started = time.monotonic()
        injected = run_scripted_session(
            desktop.display, seed=args.seed, seconds=args.seconds, app_state_file=work / "app-state.json"
        )
        active = time.monotonic() - started
        cpu_active = cpu_seconds(process) - cpu_at_start
        # Idle: let pending batches and uploads settle, then measure a span with no input at all.
        time.sleep(3)
        idle_cpu_start, idle_switches_start = cpu_seconds(process), process.num_ctx_switches()
        time.sleep(args.idle_seconds)
        cpu_idle = cpu_seconds(process) - idle_cpu_start
        switches = process.num_ctx_switches()
        idle_wakeups = (switches.voluntary + switches.involuntary) - (
            idle_switches_start.voluntary + idle_switches_start.involuntary
        )
        peak_rss = peak_rss_bytes(recorder.pid)
        exit_code = stop_process(recorder)
        stop_process(collector)

        spool_bytes = folder_bytes(work / "spool")
        text = "\n".join(output.lines)
        uploaded = re.search(r"uploaded (\d+) records, (\d+) bytes", text)
        latency = re.search(r"callback latency p50=([\d.]+) us p99=([\d.]+) us", text)
        per_hour = 3600.0 / active

        print(f"scripted session: {active:.1f} s active, {len(injected)} actions injected, seed {args.seed}")
        print(f"recorder exit code: {exit_code}")
        print(f"recorder CPU: {cpu_active / (active / 60):.3f} CPU-s per active minute")
        print(
            f"recorder CPU while idle: {cpu_idle:.3f} CPU-s over {args.idle_seconds:.0f} s, "
            f"{idle_wakeups} context switches"
        )
        print(f"recorder peak RSS: {peak_rss / 2**20:.1f} MiB")
        print(
            f"spool on disk: {spool_bytes / 2**20:.2f} MiB, "
            f"{spool_bytes * per_hour / 2**20:.1f} MiB per active hour"
        )
        if uploaded:
            sent = int(uploaded.group(2))
            print(
                f"uploaded: {uploaded.group(1)} records, {sent / 2**20:.2f} MiB → "
                f"{sent * per_hour / 2**20:.1f} MiB per active hour"
            )
        if latency:
            print(f"input callback latency: p50 {latency.group(1)} us, p99 {latency.group(2)} us")
        else:
            print("input callback latency: not reported by the recorder")


if __name__ == "__main__":
    main()
