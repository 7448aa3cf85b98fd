"""``demotrace server``: run the collector; ``demotrace server migrate``: only upgrade its database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import console, fail

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Collector data folder: database, blobs, master key (default: see `demotrace paths`).",
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DEMOTRACE_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in --data).",
    ),
]

server_app = typer.Typer(
    help="Run the collector (and manage its database).", invoke_without_command=True, no_args_is_help=False
)


@server_app.callback()
def server(
    ctx: typer.Context,
    data: DataOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    database_url: DatabaseUrlOption = None,
    blobs: Annotated[
        str | None,
        typer.Option(
            "--blobs",
            envvar="DEMOTRACE_BLOBS",
            help="Blob store: s3://bucket/prefix (endpoint and credentials from the AWS environment) "
            "or a folder (default: blobs/ in --data).",
        ),
    ] = None,
    master_key: Annotated[
        Path | None,
        typer.Option(
            "--master-key",
            help="File with the master key that wraps the data keys (default: $DEMOTRACE_MASTER_KEY, "
            "else master.key in --data, made on first start). The same for every worker and build.",
        ),
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
            help="Upload bodies stored at once, per worker; more are told to retry later (default 16).",
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
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes behind the one address.")
    ] = 1,
    retention_interval: Annotated[
        float,
        typer.Option(
            "--retention-interval",
            min=0,
            help="Seconds between retention sweeps (the policy's retention_days); 0: only on demand.",
        ),
    ] = 3600.0,
) -> None:
    """Run the collector (the database is migrated to this version's schema first)."""
    if ctx.invoked_subcommand is not None:
        return
    import dataclasses

    from demotrace.collector.admin_auth import AdminCredentialError
    from demotrace.collector.ingest import DEFAULT_MAX_CONCURRENT_INGESTS
    from demotrace.collector.limits import CollectorLimits, MiB
    from demotrace.collector.server import ServerConfigError, serve
    from demotrace.collector.store.keyring import KeyRingError
    from demotrace.collector.store.migrate import SchemaError
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
            blobs_url=blobs,
            master_key_path=master_key,
            enrollment_secret=secret,
            open_enrollment=open_enrollment,
            admin_token=admin_token,
            max_concurrent_ingests=max_concurrent_uploads or DEFAULT_MAX_CONCURRENT_INGESTS,
            certfile=certfile,
            keyfile=keyfile,
            allow_plain_http=allow_plain_http,
            admin_token_file=admin_token_file,
            limits=limits,
            workers=workers,
            retention_interval_s=retention_interval or None,
        )
    except (ServerConfigError, AdminCredentialError, SchemaError, KeyRingError, ValueError) as error:
        raise fail(str(error)) from error


@server_app.command("migrate")
def migrate(data: DataOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Upgrade the collector's database to this version's schema, then exit (the server does it too)."""
    from demotrace.collector.server import migrate_database
    from demotrace.collector.store.location import public_database_url
    from demotrace.collector.store.metadata import default_database_url
    from demotrace.collector.store.migrate import SchemaError
    from demotrace.device.paths import default_collector_dir

    data = data or default_collector_dir()
    url = database_url or default_database_url(data)
    try:
        result = migrate_database(data, database_url)
    except SchemaError as error:
        raise fail(str(error)) from error
    where = public_database_url(url)
    if not result.changed:
        console.print(f"{where}: already at {result.after}")
        return
    before = "a database made before migrations" if result.stamped else (result.before or "an empty database")
    console.print(f"{where}: upgraded from {before} to {result.after}")


def register_server_commands(app: typer.Typer) -> None:
    """Add server (server migrate, server account) to the main ``demotrace`` command."""
    from demotrace.cli.accounts import account_app

    server_app.add_typer(account_app, name="account")
    app.add_typer(server_app, name="server")
