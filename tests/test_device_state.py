"""Power and network probes, and the watcher that feeds them into the capture gate."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from test_uploader import wait_until

from demotrace.device.device_state import (
    DeviceStateWatcher,
    parse_busctl_metered,
    parse_gdbus_metered,
    read_metered,
    read_power,
    run_command,
)
from demotrace.frames.settings import PowerState
from demotrace.policy import CaptureGate


@dataclass
class Battery:
    """The shape psutil.sensors_battery() returns."""

    percent: float
    power_plugged: bool | None
    secsleft: float = 0.0


def test_read_power_on_this_machine_matches_psutil() -> None:
    battery = psutil.sensors_battery()
    power = read_power()
    if battery is None:
        assert power == PowerState(on_battery=False, battery_percent=None)
    else:
        assert power.battery_percent == pytest.approx(battery.percent)
        assert power.on_battery is (battery.power_plugged is False)


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (None, PowerState(on_battery=False, battery_percent=None)),  # a desktop: mains
        (Battery(15.0, False), PowerState(on_battery=True, battery_percent=15.0)),
        (Battery(99.5, True), PowerState(on_battery=False, battery_percent=99.5)),
        (Battery(50.0, None), PowerState(on_battery=False, battery_percent=50.0)),  # the kernel does not say
    ],
)
def test_read_power_from_a_battery_reading(reading: Battery | None, expected: PowerState) -> None:
    assert read_power(lambda: reading) == expected


def test_read_power_when_the_sensor_fails_is_mains() -> None:
    def broken() -> Battery | None:
        raise OSError("no /sys/class/power_supply")

    assert read_power(broken) == PowerState(on_battery=False, battery_percent=None)


@pytest.mark.parametrize(
    ("output", "expected"),
    [("u 1\n", True), ("u 3\n", True), ("u 2\n", False), ("u 4\n", False), ("u 0\n", None), ("", None)],
)
def test_busctl_metered_values(output: str, expected: bool | None) -> None:
    assert parse_busctl_metered(output) is expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [("(<uint32 1>,)\n", True), ("(<uint32 4>,)\n", False), ("(<uint32 0>,)\n", None), ("oops", None)],
)
def test_gdbus_metered_values(output: str, expected: bool | None) -> None:
    assert parse_gdbus_metered(output) is expected


def install_program(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_read_metered_runs_busctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_program(tmp_path, "busctl", 'echo "u 1"')
    monkeypatch.setenv("PATH", str(tmp_path))
    assert read_metered() is True


def test_read_metered_falls_back_on_gdbus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_program(tmp_path, "busctl", 'echo "Failed to connect to bus" >&2; exit 1')
    install_program(tmp_path, "gdbus", 'echo "(<uint32 4>,)"')
    monkeypatch.setenv("PATH", str(tmp_path))
    assert read_metered() is False


def test_read_metered_with_no_tool_or_bus_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither busctl nor gdbus
    assert read_metered() is None
    monkeypatch.setenv("PATH", os.defpath)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    assert read_metered() is None  # the tools exist here, the bus does not


def test_run_command_reports_failure_as_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_program(tmp_path, "probe", "echo hello; exit 3")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_command(["probe"]) is None
    assert run_command(["no-such-program"]) is None


class Probes:
    """Readings a test changes, read by the watcher through its injectable probes."""

    def __init__(self) -> None:
        self.power = PowerState(on_battery=False, battery_percent=None)
        self.metered: bool | None = None

    def read_power(self) -> PowerState:
        return self.power

    def read_metered(self) -> bool | None:
        return self.metered


def counting_gate() -> tuple[CaptureGate, list[int]]:
    gate = CaptureGate(notice_accepted=True)
    changes = [0]

    def heard() -> None:
        changes[0] += 1

    gate.subscribe(heard)
    return gate, changes


def test_watcher_fills_the_gate_on_start_and_writes_only_changes() -> None:
    gate, changes = counting_gate()
    probes = Probes()
    probes.power = PowerState(on_battery=True, battery_percent=42.0)
    probes.metered = True
    watcher = DeviceStateWatcher(
        gate, interval=3600, power_reader=probes.read_power, metered_reader=probes.read_metered
    )
    with watcher:
        state = gate.state
        assert (state.on_battery, state.battery_percent, state.metered_network) == (True, 42.0, True)
        assert changes[0] == 1

        assert watcher.refresh() is False  # nothing moved: subscribers are not woken
        assert changes[0] == 1

        probes.power = PowerState(on_battery=False, battery_percent=100.0)
        probes.metered = None  # unknown counts as unmetered
        assert watcher.refresh() is True
        state = gate.state
        assert (state.on_battery, state.battery_percent, state.metered_network) == (False, 100.0, False)
        assert changes[0] == 2


def test_watcher_refreshes_on_its_timer_and_stops() -> None:
    gate = CaptureGate(notice_accepted=True)
    probes = Probes()
    watcher = DeviceStateWatcher(
        gate, interval=0.05, power_reader=probes.read_power, metered_reader=probes.read_metered
    )
    watcher.start()
    try:
        probes.metered = True
        wait_until(lambda: gate.state.metered_network)
    finally:
        watcher.stop()
    assert not any(thread.name == "demotrace-device-state" for thread in threading.enumerate())


def test_watcher_survives_a_failing_probe() -> None:
    gate = CaptureGate(notice_accepted=True)
    probes = Probes()
    calls = [0]

    def flaky_power() -> PowerState:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("probe bug")
        return probes.power

    watcher = DeviceStateWatcher(
        gate, interval=0.05, power_reader=flaky_power, metered_reader=probes.read_metered
    )
    watcher.start()
    try:
        wait_until(lambda: calls[0] >= 3)
        probes.power = PowerState(on_battery=True, battery_percent=10.0)
        wait_until(lambda: gate.state.on_battery)
    finally:
        watcher.stop()


def test_watcher_refuses_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        DeviceStateWatcher(CaptureGate(notice_accepted=True), interval=0)
