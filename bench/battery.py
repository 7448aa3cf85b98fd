"""A laptop on battery for bench/record.py: the recorder sees a discharging battery through psutil.

The recorder runs in a user and mount namespace of its own (``unshare``) where a folder of ours is
bind-mounted over /sys/class/power_supply: psutil reads a battery at 80 % with the charger unplugged,
so the recorder's own device-state watcher, gate and deferral policy decide as on a real laptop.
``plug_in`` writes the charger back in; the watcher notices at its next reading (60 s at most).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

POWER_SUPPLY = "/sys/class/power_supply"
# sh execs the command in place, so the recorder keeps the pid the benchmark started.
_MOUNT_AND_EXEC = f'mount --bind "$FAKE_POWER" {POWER_SUPPLY} && exec "$0" "$@"'


class FakeBattery:
    """A battery folder to mount, and the command prefix that mounts it before the recorder starts."""

    def __init__(self, percent: int = 80) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="demotrace-power-"))
        (self._folder / "BAT0").mkdir()
        (self._folder / "AC").mkdir()
        (self._folder / "BAT0" / "capacity").write_text(f"{percent}\n")
        self._set(plugged=False)

    def _set(self, plugged: bool) -> None:
        (self._folder / "BAT0" / "status").write_text("Charging\n" if plugged else "Discharging\n")
        (self._folder / "AC" / "online").write_text("1\n" if plugged else "0\n")

    @property
    def prefix(self) -> list[str]:
        if shutil.which("unshare") is None:
            raise SystemExit("the battery run needs unshare (util-linux): bench/record.py --no-battery")
        return ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
                "env", f"FAKE_POWER={self._folder}", "sh", "-c", _MOUNT_AND_EXEC]  # fmt: skip

    def plug_in(self) -> None:
        self._set(plugged=True)

    def __enter__(self) -> FakeBattery:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def wait_until_quiet(
    cpu_now: Callable[[], float], *, at_least: float, quiet_for: float = 10.0, limit: float = 900.0
) -> float:
    """Wait ``at_least`` seconds, then until ``cpu_now()`` stops rising for ``quiet_for`` seconds (the
    deferred scrub is done); returns the seconds waited."""
    started = time.monotonic()
    time.sleep(at_least)
    last, quiet_since = cpu_now(), time.monotonic()
    while time.monotonic() - started < limit and time.monotonic() - quiet_since < quiet_for:
        time.sleep(1.0)
        with contextlib.suppress(Exception):
            now = cpu_now()
            if now - last > 0.05:
                last, quiet_since = now, time.monotonic()
    return time.monotonic() - started
