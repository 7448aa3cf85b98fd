"""What a process tree costs, read from /proc (through psutil where it can): CPU, resident sets, threads.

Used by bench/record.py; every figure is of processes that really ran.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from pathlib import Path
from typing import TypeVar

import psutil


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(float(p.cpu_times().user + p.cpu_times().system) for p in processes)


def context_switches(processes: list[psutil.Process]) -> int:
    return sum(p.num_ctx_switches().voluntary + p.num_ctx_switches().involuntary for p in processes)


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads by OS thread name (demotrace names its threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    by_name: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        by_name[name] = by_name.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks  # utime+stime
    return by_name


def thread_cpu_seconds(pid: int, prefix: str) -> float:
    """CPU of a process's threads whose OS name starts with ``prefix``."""
    return sum(seconds for name, seconds in cpu_by_thread(pid).items() if name.startswith(prefix))


SamplerT = TypeVar("SamplerT", bound="Sampler")


class Sampler:
    """Calls ``sample`` every ``period`` seconds on a thread while the block runs."""

    period = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self: SamplerT) -> SamplerT:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample(time.monotonic() - self._started)

    def sample(self, seconds: float) -> None:
        raise NotImplementedError


class RssSampler(Sampler):
    """Samples a process's resident set once a second (to see a trend, not the peak)."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.samples: list[tuple[float, int]] = []
        self._pid = pid

    def sample(self, seconds: float) -> None:
        with contextlib.suppress(OSError, ValueError):
            pages = int(Path(f"/proc/{self._pid}/statm").read_text().split()[1])
            self.samples.append((seconds, pages * os.sysconf("SC_PAGE_SIZE")))


def rss_trend_per_10_minutes(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of the resident set, in bytes per 10 minutes (0 with too few samples)."""
    if len(samples) < 3:
        return 0.0
    slope = statistics.linear_regression([t for t, _ in samples], [float(r) for _, r in samples]).slope
    return slope * 600


OCR_WORKER_NAME = "dt-ocr-worker"


def ocr_workers(process: psutil.Process) -> list[psutil.Process]:
    """The recorder's OCR worker processes (capture/ocr_process.py)."""
    found = []
    for child in process.children():
        with contextlib.suppress(psutil.Error):
            if child.name() == OCR_WORKER_NAME:
                found.append(child)
    return found


def cpu_with_children(processes: list[psutil.Process]) -> dict[int, float]:
    """CPU of each process and of the children it waited for (Tesseract runs), by pid."""
    totals = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            totals[process.pid] = times.user + times.system + times.children_user + times.children_system
    return totals


def rss_kinds(pid: int) -> str:
    """The resident set by kind now (anonymous: heap and buffers; file: code and libraries; shmem:
    shared mappings such as grab buffers), for the report."""
    kinds = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile", "RssShmem"):
            kinds[name[3:].lower()] = int(value.split()[0]) / 1024
    return ", ".join(f"{name} {mib:.1f}" for name, mib in kinds.items()) + " MiB"


def peak_rss_bytes(pid: int) -> int:
    # VmHWM is the kernel's own high-water mark: no sampling can miss the peak.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_cpu(process: psutil.Process) -> dict[int, float]:
    """CPU of a process and of every live descendant, by pid, each with the children it reaped (an
    ended Tesseract run counts in its parent's children times)."""
    return cpu_with_children([process, *process.children(recursive=True)])


class TreeSampler(Sampler):
    """Samples the resident set of every process of a tree twice a second, each under its pid: a
    short-lived child (a Tesseract run per strip, a helper command) ends before anyone can read its
    peak afterwards."""

    period = 0.5

    def __init__(self, process: psutil.Process) -> None:
        super().__init__()
        self.peaks: dict[int, tuple[str, int]] = {}  # pid → (name, highest resident set sampled)
        self._process = process

    def sample(self, seconds: float) -> None:
        with contextlib.suppress(psutil.Error):
            for member in [self._process, *self._process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss = int(member.memory_info().rss)
                    _, peak = self.peaks.get(member.pid, ("", 0))
                    self.peaks[member.pid] = (member.name(), max(peak, rss))

    def ended(self, alive: set[int]) -> list[tuple[str, int]]:
        """The processes seen that ended before the end, with their sampled peaks."""
        return [found for pid, found in self.peaks.items() if pid not in alive]


def summed_tree_peak(process: psutil.Process, sampler: TreeSampler) -> int:
    """Each process of the tree at its own peak: the kernel's high-water mark for those still running,
    the sampled peak for those that ended (Tesseract runs, helper commands)."""
    live = [process, *process.children(recursive=True)]
    ended = sampler.ended({member.pid for member in live})
    return sum(peak_rss_bytes(member.pid) for member in live) + sum(rss for _, rss in ended)
