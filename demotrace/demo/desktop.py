"""Start and stop a virtual desktop: Xvfb with the extensions the recorder needs, and openbox."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_PROGRAMS = ("Xvfb", "openbox", "xterm")


class DesktopError(RuntimeError):
    pass


def missing_programs() -> list[str]:
    return [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]


def _free_display_number(start: int = 90) -> int:
    for number in range(start, start + 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise DesktopError("no free X display number between :90 and :289")


def _wait_for_socket(number: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    socket_path = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + timeout
    # Xvfb gives no readiness signal we can wait on portably; the socket appearing is the signal.
    while not socket_path.exists():
        if process.poll() is not None:
            raise DesktopError(f"Xvfb :{number} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise DesktopError(f"Xvfb :{number} did not start within {timeout} s")
        time.sleep(0.05)


def xauthority_file() -> Path:
    """This process's Xauthority file for its virtual desktops (0600, in the temp folder)."""
    path = Path(tempfile.gettempdir()) / f"demotrace-xauth-{os.getpid()}"
    if not path.exists():
        atexit.register(path.unlink, missing_ok=True)
    return path


def _add_cookie(path: Path, display_number: int) -> None:
    """Append an MIT-MAGIC-COOKIE-1 entry for this host's display, in the Xauthority file format.

    Xvfb reads it with -auth, so only holders of the file may connect; python-xlib and every X client
    find it through $XAUTHORITY (a fresh machine has no ~/.Xauthority, and python-xlib refuses to
    connect without one).
    """

    def counted(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    family_local = 256
    entry = (
        struct.pack(">H", family_local)
        + counted(socket.gethostname().encode())
        + counted(str(display_number).encode())
        + counted(b"MIT-MAGIC-COOKIE-1")
        + counted(os.urandom(16))
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "ab") as handle:
        handle.write(entry)


@dataclass
class VirtualDesktop:
    """A running Xvfb (+ openbox unless window_manager=False). Use as a context manager."""

    width: int = 1920
    height: int = 1080
    window_manager: bool = True
    display: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display}

    def start(self) -> VirtualDesktop:
        missing = missing_programs()
        if missing:
            raise DesktopError(f"missing programs: {', '.join(missing)} (run scripts/setup.sh)")
        number = _free_display_number()
        self.display = f":{number}"
        auth = xauthority_file()
        _add_cookie(auth, number)
        os.environ["XAUTHORITY"] = str(auth)  # our own connections (tests, driver) need it too
        xvfb = subprocess.Popen(
            [
                "Xvfb",
                self.display,
                "-screen",
                "0",
                f"{self.width}x{self.height}x24",
                "-nolisten",
                "tcp",
                "+extension",
                "RECORD",
                "+extension",
                "XTEST",
                "-noreset",
                "-auth",
                str(auth),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(xvfb)
        _wait_for_socket(number, xvfb, timeout=15)
        if self.window_manager:
            self.spawn(["openbox", "--sm-disable"])
            self._wait_for_window_manager(timeout=15)
        return self

    def _wait_for_window_manager(self, timeout: float) -> None:
        from Xlib import X, display  # imported late: needs no X server at import, but keeps startup light

        connection = display.Display(self.display)
        try:
            root = connection.screen().root
            atom = connection.intern_atom("_NET_SUPPORTING_WM_CHECK")
            deadline = time.monotonic() + timeout
            while root.get_full_property(atom, X.AnyPropertyType) is None:
                if time.monotonic() > deadline:
                    raise DesktopError("openbox did not take over the screen")
                time.sleep(0.05)
        finally:
            connection.close()

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv, env={**self.env(), **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> VirtualDesktop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
