"""Power and network probes, and the watcher that keeps the capture gate's device state current.

- Power comes from ``psutil.sensors_battery()``: no battery means mains power.
- Whether the network is metered comes from NetworkManager's ``Metered`` property (the metered state
  of the device behind the primary connection), read over the D-Bus system bus with ``busctl`` or
  ``gdbus``, whichever is installed. No bus, no NetworkManager or no tool means *unknown*, which the
  watcher treats as unmetered: most desktops without NetworkManager sit on a wired or office network,
  and holding every upload forever on an unknown answer would be worse than the rare surprise bill.

Neither psutil nor a bare ``busctl`` call offers change notifications, so the watcher re-reads both on
a slow timer (60 s by default) by waiting on its stop Event: it costs one syscall and at most two tiny
subprocesses a minute, and stop() ends the wait at once. It writes to the gate only on a change, so
subscribers (the uploader) wake only when something they care about moved.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import psutil

from demotrace.frames.settings import PowerState
from demotrace.policy import CaptureGate, DeviceState
from demotrace.threads import name_os_thread

DEFAULT_INTERVAL_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 3.0

_NM_BUS_NAME = "org.freedesktop.NetworkManager"
_NM_OBJECT_PATH = "/org/freedesktop/NetworkManager"
_NM_INTERFACE = "org.freedesktop.NetworkManager"

# NMMetered: 0 unknown, 1 yes, 2 no, 3 guessed yes, 4 guessed no.
_NM_METERED_VALUES: dict[int, bool | None] = {0: None, 1: True, 2: False, 3: True, 4: False}

log = logging.getLogger(__name__)


class BatteryReading(Protocol):
    """What psutil.sensors_battery() returns (when there is a battery)."""

    @property
    def percent(self) -> float: ...
    @property
    def power_plugged(self) -> bool | None: ...


BatteryReader = Callable[[], BatteryReading | None]
CommandRunner = Callable[[Sequence[str]], str | None]
"""Runs a command and returns its stdout, or None if it failed, timed out or does not exist."""
PowerReader = Callable[[], PowerState]
MeteredReader = Callable[[], bool | None]


def read_power(sensors_battery: BatteryReader = psutil.sensors_battery) -> PowerState:
    """The current power source; a machine without a battery (or that cannot tell) is on mains."""
    try:
        battery = sensors_battery()
    except (OSError, RuntimeError) as error:
        log.debug("cannot read the battery: %s", error)
        return PowerState(on_battery=False, battery_percent=None)
    if battery is None:
        return PowerState(on_battery=False, battery_percent=None)
    # power_plugged is None when the kernel does not say: assume mains rather than defer work for nothing.
    on_battery = battery.power_plugged is False
    return PowerState(on_battery=on_battery, battery_percent=float(battery.percent))


def run_command(command: Sequence[str]) -> str | None:
    """Run a probe command with a short timeout; None if it is missing, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        completed = subprocess.run(
            list(command), capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("%s failed: %s", command[0], error)
        return None
    if completed.returncode != 0:
        log.debug("%s exited %d: %s", command[0], completed.returncode, completed.stderr.strip()[:200])
        return None
    return completed.stdout


def metered_from_nm_value(value: int) -> bool | None:
    """NetworkManager's NMMetered number as yes / no / unknown (guesses count as answers)."""
    return _NM_METERED_VALUES.get(value)


def parse_busctl_metered(output: str) -> bool | None:
    """``busctl get-property ... Metered`` prints ``u 4``."""
    match = re.fullmatch(r"\s*u\s+(\d+)\s*", output)
    return metered_from_nm_value(int(match.group(1))) if match else None


def parse_gdbus_metered(output: str) -> bool | None:
    """``gdbus call ... Properties.Get ... Metered`` prints ``(<uint32 4>,)``."""
    match = re.fullmatch(r"\s*\(<uint32\s+(\d+)>,\)\s*", output)
    return metered_from_nm_value(int(match.group(1))) if match else None


_METERED_PROBES: tuple[tuple[tuple[str, ...], Callable[[str], bool | None]], ...] = (
    (
        ("busctl", "--system", "get-property", _NM_BUS_NAME, _NM_OBJECT_PATH, _NM_INTERFACE, "Metered"),
        parse_busctl_metered,
    ),
    (
        (
            "gdbus",
            "call",
            "--system",
            "--dest",
            _NM_BUS_NAME,
            "--object-path",
            _NM_OBJECT_PATH,
            "--method",
            "org.freedesktop.DBus.Properties.Get",
            _NM_INTERFACE,
            "Metered",
        ),
        parse_gdbus_metered,
    ),
)


def read_metered(run: CommandRunner = run_command) -> bool | None:
    """Whether the primary connection is metered per NetworkManager; None when nobody can tell."""
    for command, parse in _METERED_PROBES:
        output = run(command)
        if output is None:
            continue
        answer = parse(output)
        if answer is not None:
            return answer
    return None


class DeviceStateWatcher:
    """Keeps ``gate``'s on_battery, battery_percent and metered_network current on a slow timer."""

    def __init__(
        self,
        gate: CaptureGate,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        *,
        power_reader: PowerReader = read_power,
        metered_reader: MeteredReader = read_metered,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.gate = gate
        self.interval = interval
        self._read_power = power_reader
        self._read_metered = metered_reader
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Read the probes once and update the gate if anything changed; returns whether it did."""
        power = self._read_power()
        metered = self._read_metered()
        changes = device_state_changes(self.gate.state, power, metered)
        if changes:
            self.gate.update_state(**changes)
        return bool(changes)

    def start(self) -> DeviceStateWatcher:
        if self._thread is not None:
            raise RuntimeError("a DeviceStateWatcher can be started once")
        self.refresh()  # the gate is right from the first decision, not a minute later
        self._thread = threading.Thread(target=self._run, name="demotrace-device-state", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        name_os_thread()
        # psutil and busctl cannot notify us: a timed wait on the stop Event, not a busy loop.
        while not self._stopping.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # a probe bug must not kill the watcher and freeze a stale state
                log.exception("device state refresh failed")

    def __enter__(self) -> DeviceStateWatcher:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def device_state_changes(state: DeviceState, power: PowerState, metered: bool | None) -> dict[str, object]:
    """The DeviceState fields that differ from what the probes read (unknown metered → unmetered)."""
    wanted: dict[str, object] = {
        "on_battery": power.on_battery,
        "battery_percent": power.battery_percent,
        "metered_network": bool(metered),
    }
    return {name: value for name, value in wanted.items() if getattr(state, name) != value}
