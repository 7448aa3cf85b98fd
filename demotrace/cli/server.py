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
    certfile: Annotated[
        Path | None,
        typer.Option("--certfile", help="TLS certificate chain (PEM): serve HTTPS. SIGHUP reloads it."),
    ] = None,
    keyfile: Annotated[Path | None, typer.Option("--keyfile", help="TLS private key (PEM).")] = None,
    allow_plain_http: Annotated[
        bool,
        typer.Option(
            "--allow-plain-http",
            help="Serve plain HTTP off loopback (only behind a proxy that terminates TLS).",
        ),
    ] = False,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-token-file",
            help="Admin tokens, one a line; re-read when it changes (rotate without a restart).",
        ),
    ] = None,
    max_ingest_memory_mb: Annotated[
        int | None,
        typer.Option(
            "--max-ingest-memory-mb",
            min=16,
            help="Memory the uploads being stored may hold at once; more are told to retry (default 512).",
        ),
    ] = None,
) -> None:
    """Run the collector."""
    import dataclasses

    from demotrace.collector.admin_auth import AdminCredentialError
    from demotrace.collector.ingest import DEFAULT_MAX_CONCURRENT_INGESTS
    from demotrace.collector.limits import CollectorLimits, MiB
    from demotrace.collector.server import ServerConfigError, serve
    from demotrace.device.paths import default_collector_dir

    limits = CollectorLimits()
    if max_ingest_memory_mb is not None:
        limits = dataclasses.replace(limits, max_ingest_memory_bytes=max_ingest_memory_mb * MiB)
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
            certfile=certfile,
            keyfile=keyfile,
            allow_plain_http=allow_plain_http,
            admin_token_file=admin_token_file,
            limits=limits,
        )
    except (ServerConfigError, AdminCredentialError) as error:
        raise fail(str(error)) from error


def register_server_commands(app: typer.Typer) -> None:
    """Add server to the main ``demotrace`` command."""
    app.command("server")(server)
