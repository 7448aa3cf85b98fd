"""Bounds on what any one client can make the collector spend: waits, rates, concurrency and memory.

Every limit refuses at once with an answer that says when to come back (429/503 with ``Retry-After``);
nothing here queues a request, so no client can make another one wait. The state kept per key (a
device, an address) is itself bounded: the oldest keys are forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from demotrace.collector.errors import Busy, TooManyRequests

MiB = 1024 * 1024
# Per-key state kept by a limiter; past it the least recently seen keys are dropped (a dropped key
# starts again with a full allowance, which only errs on the side of letting a request through).
MAX_TRACKED_KEYS = 100_000


@dataclass(frozen=True)
class CollectorLimits:
    """What one client may cost. The defaults let a device send a day's backlog at full speed (its
    uploader sends one record at a time) while a hostile or broken one cannot starve the others."""

    # A request body slower than this, once the grace has passed, is cut off and its slot freed (408).
    min_body_bytes_per_second: int = 8 * 1024
    body_grace_seconds: float = 10.0
    # Upload bodies one device may have in flight at once (records and chunks).
    max_uploads_per_device: int = 2
    # Authenticated requests per device: a sustained rate and the burst above it.
    device_requests_per_second: float = 50.0
    device_request_burst: int = 200
    # Enrolments per client address, and failed admin logins per client address (per minute, burst).
    enrollments_per_minute: float = 10.0
    enrollment_burst: int = 20
    admin_failures_per_minute: float = 5.0
    admin_failure_burst: int = 10
    # Failed portal sign-ins allowed per account name and per client address within the window.
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20
    login_failure_window_s: float = 900.0
    # Memory the upload bodies and their decompressed records being stored may hold at once.
    max_ingest_memory_bytes: int = 512 * MiB


class RateLimiter:
    """A token bucket per key: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def wait_needed(self, key: str) -> float:
        """Seconds until ``key`` may act again (0: it may now); does not spend anything."""
        with self._lock:
            tokens = self._level(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def spend(self, key: str) -> None:
        """Take one token (the bucket may go below zero: failures keep counting while refused)."""
        with self._lock:
            now = self.clock()
            self._buckets[key] = (self._level(key, now) - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)

    def take(self, key: str, what: str) -> None:
        """Spend one token for ``key``, or raise TooManyRequests (spending nothing) if there is none."""
        wait = self.wait_needed(key)
        if wait > 0:
            raise TooManyRequests(f"too many {what}: retry in {math.ceil(wait)} s", math.ceil(wait))
        self.spend(key)


class KeyedSlots:
    """At most ``limit`` things at once per key; the next is refused (429), never queued."""

    def __init__(self, limit: int, retry_after: int = 1) -> None:
        if limit < 1:
            raise ValueError("a per-key limit must be at least 1")
        self.limit = limit
        self.retry_after = retry_after
        self._in_use: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, what: str) -> None:
        with self._lock:
            count = self._in_use.get(key, 0)
            if count >= self.limit:
                raise TooManyRequests(
                    f"{count} {what} of this device are in flight already (at most {self.limit})",
                    self.retry_after,
                )
            self._in_use[key] = count + 1

    def release(self, key: str) -> None:
        with self._lock:
            count = self._in_use.get(key, 0) - 1
            if count > 0:
                self._in_use[key] = count
            else:
                self._in_use.pop(key, None)


class MemoryBudget:
    """Bytes the collector may hold for uploads being stored; a request that would pass it is told to
    come back (503 ``busy``). Reserved as the memory is about to be used, released when the request ends."""

    def __init__(self, limit: int, retry_after: int = 5) -> None:
        if limit < MiB:
            raise ValueError("the ingest memory budget must be at least 1 MiB")
        self.limit = limit
        self.retry_after = retry_after
        self.in_use = 0
        self.peak = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> None:
        with self._lock:
            if self.in_use + size > self.limit:
                raise Busy(
                    f"the collector holds {self.in_use // MiB} MiB of uploads (at most "
                    f"{self.limit // MiB} MiB): retry in {self.retry_after} s",
                    self.retry_after,
                )
            self.in_use += size
            self.peak = max(self.peak, self.in_use)

    def release(self, size: int) -> None:
        with self._lock:
            self.in_use -= size

    def reservation(self) -> MemoryReservation:
        return MemoryReservation(self)


class MemoryReservation:
    """What one request has reserved from a MemoryBudget, all given back when the ``with`` block ends."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.size = 0

    def add(self, size: int) -> None:
        self.budget.reserve(size)
        self.size += size

    def __enter__(self) -> MemoryReservation:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.budget.release(self.size)
        self.size = 0
