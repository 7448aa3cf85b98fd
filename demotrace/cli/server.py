"""``demotrace server``: run the collector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import fail


def server(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Collector data folder (default: see `demotrace paths`)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in --data).")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--enrollment-secret",
            envvar="DEMOTRACE_ENROLLMENT_SECRET",
            help="Devices must present it to enroll (required off loopback, unless --open-enrollment).",
        ),
    ] = None,
    open_enrollment: Annotated[
        bool,
        typer.Option(
            "--open-enrollment", help="Let any device that reaches a non-loopback address enroll, no secret."
        ),
    ] = False,
    admin_token: Annotated[
        str | None,
        typer.Option("--admin-token", envvar="DEMOTRACE_ADMIN_TOKEN", help="Token for the admin API."),
    ] = None,
    max_concurrent_uploads: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent-uploads",
            min=1,
            help="Upload bodies stored at once; more are told to retry later (default 16).",
        ),
    ] = None,
) -> None:
    """Run the collector."""
    from demotrace.collector.ingest import DEFAULT_MAX_CONCURRENT_INGESTS
    from demotrace.collector.server import ServerConfigError, serve
    from demotrace.device.paths import default_collector_dir

    try:
        serve(
            data or default_collector_dir(),
            host=host,
            port=port,
            database_url=database_url,
            enrollment_secret=secret,
            open_enrollment=open_enrollment,
            admin_token=admin_token,
            max_concurrent_ingests=max_concurrent_uploads or DEFAULT_MAX_CONCURRENT_INGESTS,
        )
    except ServerConfigError as error:
        raise fail(str(error)) from error


def register_server_commands(app: typer.Typer) -> None:
    """Add server to the main ``demotrace`` command."""
    app.command("server")(server)
