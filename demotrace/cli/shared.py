"""What every command group shares: where output goes, how a command fails, common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
"""A command's answer (tables, confirmations)."""
stderr = Console(stderr=True)
"""Errors, notes and progress; also the answers of record, enroll, build and demo, as before the split."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and give the exit to raise (2: bad input, nothing was done).

    The message is escaped: an error's text (a path, an exception) may hold square brackets.
    """
    stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def print_fields(rows: list[tuple[str, str]]) -> None:
    """``name  value`` lines on stdout, names aligned, values whole (paths are there to be copied, so
    they are never cut to the terminal's width). Values are plain text, not markup."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        console.print(f"{name:<{width}}  {escape(value)}", soft_wrap=True, highlight=False)


SpoolOption = Annotated[
    Path | None,
    typer.Option("--spool", help="Spool folder, encrypted, on this device (default: see `demotrace paths`)."),
]
KeyOption = Annotated[
    Path | None, typer.Option("--key", help="Spool key file (default: spool.key in the config folder).")
]
CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        "--credentials", help="Device credentials from `enroll` (default: device.json in the config folder)."
    ),
]
