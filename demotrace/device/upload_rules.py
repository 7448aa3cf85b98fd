"""When to upload: a pure decision over policy, device state, backlog and today's volume.

The uploader obeys the policy and the device state through one pure function, ``upload_decision``: no
uploads on a metered network (unless ``upload_on_metered``), none on battery until the backlog is large
or old (none at all on a low battery unless ``low_battery_mode`` is "normal"), at most
``daily_upload_mb`` a local day (counted by ``DailyUploadCounter`` in a 0600 file next to the spool, so
a restart does not reset it), and in bursts rather than a trickle. After a failure, ``backoff_delay``
says how long to wait.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from demotrace.files import write_private_file
from demotrace.policy import CapturePolicy, DeviceState

UPLOAD_STATE_FILE = "upload-state.json"  # next to the spool: bytes sent today

KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000  # daily_upload_mb counts like data plans do: decimal megabytes

log = logging.getLogger(__name__)


UploadPhase = Literal["waiting", "burst", "final"]
"""``waiting``: nothing is being sent, every threshold applies; ``burst``: a burst is under way and goes
on until the backlog is empty (size and age thresholds no longer apply); ``final``: the flush at stop,
which skips the burst threshold but still respects the network, the battery and the daily cap."""


@dataclass(frozen=True)
class UploadRules:
    """Thresholds that are ours, not the policy's. Backlog sizes count spooled (uncompressed) bytes."""

    # Send in bursts: the radio wakes up once for a good amount of data rather than every few seconds.
    burst_bytes: int = 256 * KiB
    burst_age_s: float = 5 * 60.0
    # On battery, wait for mains power unless the backlog grows large or old: a laptop unplugged all day
    # must not fill its spool, and the data should reach the collector within a working session.
    battery_backlog_bytes: int = 8 * MiB
    battery_age_s: float = 2 * 3600.0


DEFAULT_UPLOAD_RULES = UploadRules()
IMMEDIATE_UPLOAD_RULES = UploadRules(burst_bytes=0, burst_age_s=0.0)


@dataclass(frozen=True)
class UploadDecision:
    send: bool
    max_bytes: int | None  # compressed bytes that may go now (what is left of today's cap); None: no cap
    reason: str
    recheck_after_s: float | None = None  # a hold that ends with time: decide again after this long


def local_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(now))


def seconds_until_next_local_day(now: float) -> float:
    today = time.localtime(now)
    # mktime normalises day 32 into the next month and, with isdst=-1, finds the right DST offset.
    midnight = time.mktime((today.tm_year, today.tm_mon, today.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    return max(1.0, midnight - now)


def daily_cap_bytes(policy: CapturePolicy) -> int:
    return max(0, int(policy.daily_upload_mb * MB))


def upload_decision(
    policy: CapturePolicy,
    state: DeviceState,
    backlog_bytes: int,
    oldest_pending_age_s: float | None,
    sent_today_bytes: int,
    now: float,
    *,
    phase: UploadPhase = "waiting",
    rules: UploadRules = DEFAULT_UPLOAD_RULES,
) -> UploadDecision:
    """May the uploader send now, and how much? Holds are checked from the hardest to the softest."""
    if state.exempt:
        return UploadDecision(False, 0, "this device is exempt from recording: nothing is uploaded")
    if backlog_bytes <= 0:
        return UploadDecision(False, 0, "nothing to send")
    age = oldest_pending_age_s or 0.0
    if state.metered_network and not policy.upload_on_metered:
        return UploadDecision(False, 0, "metered network: uploads wait for an unmetered one")
    if state.on_battery:
        low = state.battery_percent is not None and state.battery_percent < policy.low_battery_percent
        if low and policy.low_battery_mode != "normal":
            return UploadDecision(
                False, 0, f"battery low ({state.battery_percent:.0f}%): uploads wait for mains power"
            )
        large_or_old = backlog_bytes >= rules.battery_backlog_bytes or age >= rules.battery_age_s
        if phase != "burst" and not large_or_old:
            return UploadDecision(
                False,
                0,
                "on battery: uploads wait for mains power or a large or old backlog",
                recheck_after_s=rules.battery_age_s - age,
            )
    remaining = daily_cap_bytes(policy) - sent_today_bytes
    if remaining <= 0:
        return UploadDecision(
            False,
            0,
            f"daily upload cap of {policy.daily_upload_mb:g} MB reached: the backlog waits for tomorrow",
            recheck_after_s=seconds_until_next_local_day(now),
        )
    if phase == "waiting" and backlog_bytes < rules.burst_bytes and age < rules.burst_age_s:
        return UploadDecision(
            False,
            0,
            f"collected to send in one burst, when {rules.burst_bytes / KiB:.0f} KiB wait"
            f" ({backlog_bytes / KiB:.0f} KiB now) or the oldest is {rules.burst_age_s / 60:g} minutes old:"
            " fewer wake-ups of the network",
            recheck_after_s=rules.burst_age_s - age,
        )
    return UploadDecision(True, remaining, "sending")


UNRESTRICTED = UploadDecision(True, None, "no upload policy")


class _DailyState(msgspec.Struct):
    day: str
    sent_bytes: int


class DailyUploadCounter:
    """Compressed bytes sent per local day, kept in a small 0600 JSON file so restarts do not reset it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = _DailyState(day="", sent_bytes=0)
        self._dirty = False
        try:
            self._state = msgspec.json.decode(path.read_bytes(), type=_DailyState)
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError) as error:
            # Starting from zero may let one day pass its cap once; refusing to upload forever is worse.
            log.warning("upload counter %s is unreadable (%s): counting today from zero", path, error)

    def sent_on(self, day: str) -> int:
        return self._state.sent_bytes if self._state.day == day else 0

    def add(self, day: str, sent_bytes: int) -> None:
        self._state = _DailyState(day=day, sent_bytes=self.sent_on(day) + sent_bytes)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        write_private_file(self.path, msgspec.json.encode(self._state), temp_prefix=".upload-state-")
        self._dirty = False


def backoff_delay(
    failures: int, retry_after: float | None, initial: float, maximum: float, jitter: float
) -> float:
    """Seconds to wait after ``failures`` failures in a row: exponential from ``initial``, at most
    ``maximum``, and at least what the collector asked for in Retry-After (itself capped at ``maximum``,
    so a confused server cannot park a device for a day). ``jitter`` in [0, 1] picks within the upper
    half of the step: a fleet's retries after an outage spread out instead of arriving at once."""
    ceiling = min(maximum, initial * 2.0 ** min(failures - 1, 32))
    delay = ceiling / 2 + jitter * ceiling / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum))
    return delay
