"""Trying demotrace on one machine: ``demo`` (a scripted virtual desktop) and ``up`` (the real one).

Both record into a local collector and build the dataset (demotrace/demo/run.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import fail, stderr


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
        Path | None,
        typer.Option("--spool", help="Spool folder (default: see `demotrace paths`)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Local collector folder (default: see `demotrace paths`)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Local collector port (on 127.0.0.1).")] = 8765,
) -> None:
    """Record the real desktop into a local collector until Ctrl+C (on a machine with a display)."""
    from demotrace.demo.local import LocalSetupError, record_local
    from demotrace.device.client import TransportError
    from demotrace.device.paths import default_collector_dir, default_spool_dir

    if not os.environ.get("DISPLAY"):
        raise fail("no $DISPLAY: `up` records a real desktop; use `demotrace demo` on a machine without one")
    _offer_notice()
    try:
        spool, data = spool or default_spool_dir(), data or default_collector_dir()
        code = record_local(spool, data, port, console=stderr)
    except (LocalSetupError, TransportError) as error:
        raise fail(str(error)) from error
    raise typer.Exit(code)


def _offer_notice() -> None:
    """At a terminal, show the notice of `up`'s policy and ask, unless it is accepted already; elsewhere
    the recorder waits (and says so) until `demotrace notice --accept`."""
    from demotrace.device.consent import accept_notice, default_ack_path, load_ack
    from demotrace.notice import acceptance_holds, notice_digest, notice_text
    from demotrace.policy import DEFAULT_LOCAL_POLICY

    path = default_ack_path()
    if acceptance_holds(load_ack(path), DEFAULT_LOCAL_POLICY) or not sys.stdin.isatty():
        return
    stderr.print(notice_text(DEFAULT_LOCAL_POLICY), markup=False, highlight=False, soft_wrap=True)
    if typer.confirm("Accept this notice? Nothing is recorded until you do", default=False, err=True):
        accept_notice(path, DEFAULT_LOCAL_POLICY, notice_digest(DEFAULT_LOCAL_POLICY))


def register_demo_commands(app: typer.Typer) -> None:
    """Add demo and up to the main ``demotrace`` command."""
    app.command("demo")(demo)
    app.command("up")(up)
