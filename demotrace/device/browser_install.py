"""Registering the browser extension's native messaging host with the installed browsers.

A browser starts a native messaging host it finds in a JSON manifest named after the host, in a folder
of its own: per user (``~/.config/chromium/NativeMessagingHosts``, ``~/.mozilla/native-messaging-hosts``
…, or ``<user-data-dir>/NativeMessagingHosts`` for a Chromium profile started with ``--user-data-dir``)
or for the whole machine (``/etc/chromium/native-messaging-hosts`` …). The manifest names the program
to start - a two-line launcher that runs ``python -m demotrace.device.browser_host`` with this Python -
and the one extension allowed to start it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from demotrace.device.browser_host import HOST_NAME

# Chromium derives an extension's id from the public key in its manifest ("key"): this is ours.
CHROMIUM_EXTENSION_ID = "jkkocplhejkdhamckhbhmmkdcoeaihbn"
FIREFOX_EXTENSION_ID = "recorder-bridge@demotrace.invalid"
BrowserKind = Literal["chromium", "firefox"]


@dataclass(frozen=True)
class BrowserHosts:
    """Where one browser looks for native messaging hosts."""

    name: str
    kind: BrowserKind
    programs: tuple[str, ...]  # any of these on PATH: the browser is installed
    user_dir: str  # relative to the home folder
    system_dir: str


BROWSERS = (
    BrowserHosts(
        "chromium",
        "chromium",
        ("chromium", "chromium-browser"),
        ".config/chromium/NativeMessagingHosts",
        "/etc/chromium/native-messaging-hosts",
    ),
    BrowserHosts(
        "google-chrome",
        "chromium",
        ("google-chrome", "google-chrome-stable"),
        ".config/google-chrome/NativeMessagingHosts",
        "/etc/opt/chrome/native-messaging-hosts",
    ),
    BrowserHosts(
        "microsoft-edge",
        "chromium",
        ("microsoft-edge", "microsoft-edge-stable"),
        ".config/microsoft-edge/NativeMessagingHosts",
        "/etc/opt/edge/native-messaging-hosts",
    ),
    BrowserHosts(
        "brave",
        "chromium",
        ("brave-browser",),
        ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
        "/etc/brave/native-messaging-hosts",
    ),
    BrowserHosts(
        "firefox",
        "firefox",
        ("firefox", "firefox-esr"),
        ".mozilla/native-messaging-hosts",
        "/usr/lib/mozilla/native-messaging-hosts",
    ),
)


def installed_browsers() -> list[BrowserHosts]:
    return [browser for browser in BROWSERS if any(shutil.which(p) for p in browser.programs)]


def host_manifest(kind: BrowserKind, launcher: Path) -> dict[str, object]:
    manifest: dict[str, object] = {
        "name": HOST_NAME,
        "description": "demotrace recorder: which page is in front, for the capture policy",
        "path": str(launcher),
        "type": "stdio",
    }
    if kind == "firefox":
        manifest["allowed_extensions"] = [FIREFOX_EXTENSION_ID]
    else:
        manifest["allowed_origins"] = [f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"]
    return manifest


def write_launcher(path: Path, python: str = sys.executable, socket: Path | None = None) -> Path:
    """The program the browser starts: this Python running the host (``socket``: a fixed bridge path,
    else the recorder's default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["#!/bin/sh", "# demotrace browser install: the browser extension's native messaging host"]
    if socket is not None:
        lines.append(f"export DEMOTRACE_BROWSER_SOCKET={shlex.quote(str(socket))}")
    lines.append(f'exec {shlex.quote(python)} -m demotrace.device.browser_host "$@"')
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o755)
    return path


def write_host_manifest(folder: Path, kind: BrowserKind, launcher: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{HOST_NAME}.json"
    target.write_text(json.dumps(host_manifest(kind, launcher), indent=2) + "\n")
    os.chmod(target, 0o644)
    return target


def install_hosts(
    browsers: list[BrowserHosts], launcher: Path, *, system: bool = False, home: Path | None = None
) -> list[Path]:
    """Write the host manifest for each browser (per user, or for the machine); returns the files."""
    base = home or Path.home()
    written = []
    for browser in browsers:
        folder = Path(browser.system_dir) if system else base / browser.user_dir
        written.append(write_host_manifest(folder, browser.kind, launcher))
    return written
