"""Installing the agent for a person on their laptop: a systemd user unit runs the recorder in the desktop
session, an XDG autostart entry shows the tray icon at login.

The file contents are pure functions of what they run (tested, and checked with ``systemd-analyze
verify`` and ``desktop-file-validate``); writing, enabling and removing them are the only I/O here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RECORDER_UNIT = "demotrace-recorder.service"
TRAY_DESKTOP_FILE = "demotrace-tray.desktop"
# Longer than the recorder's own stop: it uploads what is pending (at most 30 s) after OCR finishes.
STOP_TIMEOUT_SECONDS = 120


class InstallError(Exception):
    """The agent cannot be installed as asked; the message says why and what to do."""


def _xdg_config_home() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".config"


def user_unit_dir() -> Path:
    """Where systemd looks for a user's own units: ``$XDG_CONFIG_HOME/systemd/user``."""
    return _xdg_config_home() / "systemd" / "user"


def autostart_dir() -> Path:
    """Where the desktop starts a user's programs at login: ``$XDG_CONFIG_HOME/autostart``."""
    return _xdg_config_home() / "autostart"


def installed_command() -> Path:
    """The absolute path of the ``demotrace`` command of this installation (next to its Python)."""
    beside = Path(sys.executable).parent / "demotrace"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside.absolute()
    found = shutil.which("demotrace")
    if found is None:
        raise InstallError(
            "cannot find the `demotrace` command of this installation: install the package (pip or uv) first"
        )
    return Path(found).absolute()


def systemd_quote(word: str) -> str:
    """One word of an ``ExecStart=`` line: specifiers (%) and variables ($) taken literally, quoted when
    it holds a space or a quote (systemd.service(5), "Command lines")."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if escaped and not any(char in escaped for char in " \t\"'\\"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def desktop_quote(word: str) -> str:
    """One word of a desktop entry's ``Exec=`` (Desktop Entry Specification, "The Exec key")."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`=")
    if word and not reserved.intersection(word):
        return word.replace("%", "%%")
    inner = "".join("\\" + char if char in '"`$\\' else char for char in word).replace("%", "%%")
    # The desktop file's own string escaping doubles every backslash once more.
    return '"' + inner.replace("\\", "\\\\") + '"'


@dataclass(frozen=True)
class AgentCommands:
    """What the session runs: the recorder's and the tray's command lines (absolute program first)."""

    recorder: tuple[str, ...]
    tray: tuple[str, ...]


def agent_commands(
    program: Path,
    *,
    server: str | None,
    credentials: Path | None = None,
    ca_bundle: Path | None = None,
    policy: Path | None = None,
    portal: str | None = None,
) -> AgentCommands:
    recorder = [str(program), "record"]
    if server is not None:
        recorder += ["--server", server]
    if credentials is not None:
        recorder += ["--credentials", str(credentials.absolute())]
    if ca_bundle is not None:
        recorder += ["--ca-bundle", str(ca_bundle.absolute())]
    if policy is not None:
        recorder += ["--policy", str(policy.absolute())]
    tray = [str(program), "tray"]
    if portal is not None:
        tray += ["--portal", portal]
    return AgentCommands(tuple(recorder), tuple(tray))


def recorder_unit(recorder: Sequence[str]) -> str:
    """The systemd user unit that runs the recorder for as long as the graphical session runs."""
    return "\n".join(
        [
            "[Unit]",
            "Description=demotrace recorder (captures computer use where the policy allows it)",
            # The desktop session imports DISPLAY into the user manager before this target starts.
            "PartOf=graphical-session.target",
            "After=graphical-session.target",
            "",
            "[Service]",
            "Type=exec",
            "ExecStart=" + " ".join(systemd_quote(word) for word in recorder),
            "Environment=PYTHONUNBUFFERED=1",
            # A crash restarts it; a bad setting (exit 2: one clear error line in the journal) does not loop.
            "Restart=on-failure",
            "RestartSec=10",
            "RestartPreventExitStatus=2",
            # SIGINT: the recorder flushes its spool and uploads what is pending before it exits.
            "KillSignal=SIGINT",
            f"TimeoutStopSec={STOP_TIMEOUT_SECONDS}",
            "",
            "[Install]",
            "WantedBy=graphical-session.target",
            "",
        ]
    )


def tray_desktop_entry(tray: Sequence[str]) -> str:
    """The XDG autostart entry that shows the tray icon at login."""
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Name=demotrace tray",
            "Comment=Shows when demotrace records; pause, resume and the recording notice",
            "Exec=" + " ".join(desktop_quote(word) for word in tray),
            "Icon=media-record",
            "Terminal=false",
            "NoDisplay=true",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
    )


@dataclass(frozen=True)
class InstalledFiles:
    unit: Path
    autostart: Path


def installed_files() -> InstalledFiles:
    return InstalledFiles(user_unit_dir() / RECORDER_UNIT, autostart_dir() / TRAY_DESKTOP_FILE)


def write_agent_files(commands: AgentCommands) -> InstalledFiles:
    files = installed_files()
    for path, text in (
        (files.unit, recorder_unit(commands.recorder)),
        (files.autostart, tray_desktop_entry(commands.tray)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def remove_agent_files() -> list[Path]:
    """Remove the unit and the autostart entry; returns what was there."""
    removed = []
    files = installed_files()
    for path in (files.unit, files.autostart):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def systemctl_user(*args: str) -> str | None:
    """Run ``systemctl --user ARGS``; None when it worked, else why not (no user manager, say)."""
    program = shutil.which("systemctl")
    if program is None:
        return "systemctl is not installed"
    try:
        done = subprocess.run([program, "--user", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {done.returncode}"
    return None
