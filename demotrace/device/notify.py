"""Desktop notifications, best effort: ``notify-send`` if installed, else the freedesktop Notifications
service over the D-Bus session bus (through GLib's ``gdbus``), else only a log line. Never raises and
never blocks its caller: the work happens on a short-lived background thread.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from typing import Literal

APP_NAME = "demotrace"
NOTIFY_TIMEOUT_SECONDS = 5.0
EXPIRE_MS = 6000

Channel = Literal["notify-send", "dbus", "log"]

log = logging.getLogger(__name__)


def session_bus_reachable(env: Mapping[str, str]) -> bool:
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime = env.get("XDG_RUNTIME_DIR")
    return runtime is not None and os.path.exists(os.path.join(runtime, "bus"))


def channels(env: Mapping[str, str]) -> list[Channel]:
    """The ways to show a notification here, best first (looked up on ``env``'s PATH); "log" is last."""
    found: list[Channel] = []
    path = env.get("PATH", "")
    if shutil.which("notify-send", path=path):
        found.append("notify-send")
    if session_bus_reachable(env) and shutil.which("gdbus", path=path):
        found.append("dbus")
    found.append("log")
    return found


def gvariant_string(text: str) -> str:
    """``text`` as a GVariant text-format string literal (what gdbus parses its arguments as)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def notify_send_command(summary: str, body: str) -> list[str]:
    return ["notify-send", f"--app-name={APP_NAME}", f"--expire-time={EXPIRE_MS}", "--", summary, body]


def dbus_command(summary: str, body: str) -> list[str]:
    """org.freedesktop.Notifications.Notify(app, replaces_id, icon, summary, body, actions, hints, ms)."""
    return [
        "gdbus",
        "call",
        "--session",
        "--dest=org.freedesktop.Notifications",
        "--object-path=/org/freedesktop/Notifications",
        "--method=org.freedesktop.Notifications.Notify",
        gvariant_string(APP_NAME),
        "0",
        "''",
        gvariant_string(summary),
        gvariant_string(body),
        "@as []",
        "@a{sv} {}",
        str(EXPIRE_MS),
    ]


def _run(command: list[str], env: Mapping[str, str]) -> bool:
    try:
        completed = subprocess.run(
            command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=NOTIFY_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("%s failed: %s", command[0], error)
        return False
    if completed.returncode != 0:
        log.debug("%s exited %d: %s", command[0], completed.returncode, completed.stderr[:300])
    return completed.returncode == 0


def show(summary: str, body: str = "", env: Mapping[str, str] | None = None) -> Channel:
    """Show a notification now, on this thread; returns the channel that delivered it ("log" if none)."""
    environment = os.environ if env is None else env
    for channel in channels(environment):
        if channel == "notify-send" and _run(notify_send_command(summary, body), environment):
            return channel
        if channel == "dbus" and _run(dbus_command(summary, body), environment):
            return channel
    log.info("notification: %s%s", summary, f" — {body}" if body else "")
    return "log"


def notify(summary: str, body: str = "") -> threading.Thread:
    """Show a notification in the background; returns the thread (join it only in tests)."""
    thread = threading.Thread(target=show, args=(summary, body), name="demotrace-notify", daemon=True)
    thread.start()
    return thread


def pause_message(kind: str, paused_until: float | None) -> tuple[str, str]:
    """The summary and body shown when recording pauses or resumes."""
    if kind == "paused" and paused_until is not None:
        until = datetime.datetime.fromtimestamp(paused_until).strftime("%H:%M")
        return "Recording paused", f"demotrace records nothing until {until}. Resume at any time."
    if kind == "expired":
        return "Recording resumed", "The pause has ended; demotrace records again where policy allows."
    return "Recording resumed", "demotrace records again where policy allows."


def notify_pause_change(kind: str, paused_until: float | None) -> None:
    """A PauseController ``on_change`` listener."""
    notify(*pause_message(kind, paused_until))
