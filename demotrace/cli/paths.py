"""``demotrace paths``: where every command keeps its files, and how to move them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from demotrace.cli.shared import console


def known_paths() -> list[tuple[str, str, str]]:
    """(name, path, what is there) for each folder and file demotrace uses by default."""
    from demotrace.device.control_protocol import default_socket_path
    from demotrace.device.enrollment import default_credentials_path
    from demotrace.device.paths import (
        config_dir,
        data_dir,
        default_collector_dir,
        default_spool_dir,
        state_dir,
    )
    from demotrace.device.pause import default_pause_state_file
    from demotrace.device.spool import default_key_path

    return [
        ("config", str(config_dir()), "keys, device id, credentials ($XDG_CONFIG_HOME)"),
        ("data", str(data_dir()), "spool and local collector ($XDG_DATA_HOME)"),
        ("state", str(state_dir()), "a running pause ($XDG_STATE_HOME)"),
        ("spool", str(default_spool_dir()), "record, up, build --spool (--spool)"),
        ("collector", str(default_collector_dir()), "server, up, build --from-server (--data)"),
        ("spool key", str(default_key_path()), "decrypts the spool (--key)"),
        ("credentials", str(default_credentials_path()), "from enroll (--credentials)"),
        ("pause", str(default_pause_state_file()), "survives a restart"),
        ("control socket", str(default_socket_path()), "pause, resume, status, task ($XDG_RUNTIME_DIR)"),
    ]


def paths(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Show where demotrace keeps its files (XDG folders; each command's options override them)."""
    found = known_paths()
    if as_json:
        import json

        print(json.dumps({name.replace(" ", "_"): path for name, path, _ in found}, indent=2))
        return
    # Whole paths, never cut to the terminal's width: they are there to be copied.
    width = max(len(name) for name, _, _ in found)
    for name, path, what in found:
        console.print(f"{name:<{width}}  {escape(path)}  [dim]# {escape(what)}[/]", soft_wrap=True)


def register_paths_commands(app: typer.Typer) -> None:
    """Add paths to the main ``demotrace`` command."""
    app.command("paths")(paths)
