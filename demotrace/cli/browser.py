"""The browser extension's side of the device: ``demotrace browser install``.

Registered by ``register_browser_commands(app)`` in demotrace/cli/main.py. It registers the native
messaging host (``demotrace.device.browser_host``) with the installed browsers, so the extension in
``extension/`` can report pages to the recorder; deploying the extension itself is the browser's
business (see README: force-install policies).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import console, fail

browser_app = typer.Typer(
    help="Connect the browser extension to the recorder (native messaging).", no_args_is_help=True
)

# Where the launcher goes: per user, or for every user of the machine.
USER_LAUNCHER = Path(".local/share/demotrace/browser-host")
SYSTEM_LAUNCHER = Path("/usr/local/lib/demotrace/browser-host")


@browser_app.command("install")
def browser_install(
    browser: Annotated[
        list[str] | None,
        typer.Option(
            "--browser",
            help="chromium, google-chrome, microsoft-edge, brave or firefox (repeat); "
            "default: every one installed here.",
        ),
    ] = None,
    system: Annotated[
        bool, typer.Option("--system", help="For every user of this machine (/etc/…; needs root).")
    ] = False,
    user_data_dir: Annotated[
        Path | None,
        typer.Option("--user-data-dir", help="Also for a Chromium profile started with --user-data-dir."),
    ] = None,
) -> None:
    """Register the native messaging host that passes the extension's reports to the recorder."""
    from demotrace.device.browser_install import (
        BROWSERS,
        install_hosts,
        installed_browsers,
        write_host_manifest,
        write_launcher,
    )

    known = {entry.name: entry for entry in BROWSERS}
    unknown = [name for name in browser or [] if name not in known]
    if unknown:
        raise fail(f"unknown browser {', '.join(unknown)}: use {', '.join(known)}")
    chosen = [known[name] for name in browser] if browser else installed_browsers()
    if not chosen and user_data_dir is None:
        raise fail("no supported browser found on PATH: name one with --browser")
    launcher_path = SYSTEM_LAUNCHER if system else Path.home() / USER_LAUNCHER
    try:
        launcher = write_launcher(launcher_path, sys.executable)
        written = install_hosts(chosen, launcher, system=system)
        if user_data_dir is not None:
            written.append(write_host_manifest(user_data_dir / "NativeMessagingHosts", "chromium", launcher))
    except OSError as error:
        raise fail(f"cannot install the native messaging host: {error}") from error
    console.print(f"host program: {launcher}", soft_wrap=True)
    for path in written:
        console.print(f"registered: {path}", soft_wrap=True)
    console.print("Now install the extension (README: the browser extension) and restart the browser.")


def register_browser_commands(app: typer.Typer) -> None:
    app.add_typer(browser_app, name="browser")
