"""How long the input callbacks (the hot path) hold their listener thread, as they measure it themselves."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

LATENCY_SAMPLES = 1 << 16  # per listener; a power of two so the ring index is a mask


@dataclass(frozen=True)
class LatencyStats:
    """Duration of the input callbacks themselves (the hot path), in nanoseconds."""

    count: int
    p50_ns: int
    p99_ns: int
    max_ns: int


class LatencyRing:
    """Preallocated ring of callback durations; written by one listener thread only.

    Two clocks: wall time (what the callback held its thread for, OS preemption included: on a busy
    machine another process may run in the middle) and the thread's CPU time (the callback's own work)."""

    __slots__ = ("count", "cpu_samples", "mask", "samples")

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self.samples = array("q", bytes(8 * size))
        self.cpu_samples = array("q", bytes(8 * size))
        self.mask = size - 1
        self.count = 0

    def add(self, wall_ns: int, cpu_ns: int) -> None:
        index = self.count & self.mask
        self.samples[index] = wall_ns
        self.cpu_samples[index] = cpu_ns
        self.count += 1

    def values(self) -> list[int]:
        return list(self.samples[: min(self.count, self.mask + 1)])

    def cpu_values(self) -> list[int]:
        return list(self.cpu_samples[: min(self.count, self.mask + 1)])


def latency_stats(samples: list[int]) -> LatencyStats:
    if not samples:
        return LatencyStats(0, 0, 0, 0)
    ordered = sorted(samples)
    last = len(ordered) - 1
    return LatencyStats(len(ordered), ordered[last // 2], ordered[(last * 99) // 100], ordered[last])
