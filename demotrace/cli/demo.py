"""Trying demotrace on one machine: ``demo`` (a scripted virtual desktop) and ``up`` (the real one).

Both record into a local collector and build the dataset (demotrace/demo/run.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import fail, stderr


def data_dir() -> Path:
    """Where ``up`` keeps its spool and collector: ``$XDG_DATA_HOME/demotrace``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "demotrace"


def demo(
    seconds: Annotated[float, typer.Option(help="Length of the scripted session.")] = 45.0,
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes everything.")] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="Seed of the scripted session.")] = 1,
) -> None:
    """Record a scripted session on a virtual desktop, upload it, build the dataset, print a summary."""
    from demotrace.demo.run import run_demo

    raise typer.Exit(run_demo(out, seconds=seconds, seed=seed, console=stderr))


def up(
    spool: Annotated[
        Path | None, typer.Option("--spool", help="Spool folder (default: in XDG data).")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Local collector folder.")] = None,
    port: Annotated[int, typer.Option(help="Local collector port.")] = 8765,
) -> None:
    """Record the real desktop into a local collector (on a machine with a display)."""
    from demotrace.demo.run import record_local

    if not os.environ.get("DISPLAY"):
        raise fail("no $DISPLAY: `up` records a real desktop; use `demotrace demo` on a machine without one")
    code = record_local(spool or data_dir() / "spool", data or data_dir() / "collector", port, console=stderr)
    raise typer.Exit(code)


def register_demo_commands(app: typer.Typer) -> None:
    """Add demo and up to the main ``demotrace`` command."""
    app.command("demo")(demo)
    app.command("up")(up)
