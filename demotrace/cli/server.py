"""``demotrace server``: run the collector; ``demotrace server migrate``: only upgrade its database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import console, fail

DataOption = Annotated[
    Path, typer.Option("--data", help="Collector data folder (database, blobs, master key by default).")
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
    data: DataOption = Path("collector-data"),
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
    from demotrace.collector.ingest import DEFAULT_MAX_CONCURRENT_INGESTS
    from demotrace.collector.server import ServerConfigError, serve
    from demotrace.collector.store.keyring import KeyRingError
    from demotrace.collector.store.migrate import SchemaError

    try:
        serve(
            data,
            host=host,
            port=port,
            database_url=database_url,
            blobs_url=blobs,
            master_key_path=master_key,
            enrollment_secret=secret,
            open_enrollment=open_enrollment,
            admin_token=admin_token,
            max_concurrent_ingests=max_concurrent_uploads or DEFAULT_MAX_CONCURRENT_INGESTS,
            workers=workers,
            retention_interval_s=retention_interval or None,
        )
    except (ServerConfigError, SchemaError, KeyRingError, ValueError) as error:
        raise fail(str(error)) from error


@server_app.command("migrate")
def migrate(data: DataOption = Path("collector-data"), database_url: DatabaseUrlOption = None) -> None:
    """Upgrade the collector's database to this version's schema, then exit (the server does it too)."""
    from demotrace.collector.server import migrate_database
    from demotrace.collector.store.location import public_database_url
    from demotrace.collector.store.metadata import default_database_url
    from demotrace.collector.store.migrate import SchemaError

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
    """Add server (and server migrate) to the main ``demotrace`` command."""
    app.add_typer(server_app, name="server")
