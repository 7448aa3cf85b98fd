"""The one `demotrace` command. Sub-commands import their modules lazily so each starts fast."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from demotrace.paths import config_dir

app = typer.Typer(
    name="demotrace",
    help="Record computer use where policy allows it, and turn it into agent-training trajectories.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "demotrace"


def local_device_id() -> str:
    """A random id for this device, made once; never derived from the host or user name."""
    path = config_dir() / "device_id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    device_id = f"dev-{uuid.uuid4().hex[:16]}"
    path.write_text(device_id + "\n")
    return device_id


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


SpoolOption = Annotated[Path, typer.Option("--spool", help="Spool folder (encrypted, on this device).")]
KeyOption = Annotated[
    Path | None, typer.Option("--key", help="Spool key file (default: ~/.config/demotrace/spool.key).")
]
CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        "--credentials", help="Device credentials from `enroll` (default: ~/.config/demotrace/device.json)."
    ),
]


@app.command()
def record(
    spool: SpoolOption = Path("spool"),
    server: Annotated[
        str | None, typer.Option("--server", help="Collector URL: fleet policy, uploads in the background.")
    ] = None,
    key: KeyOption = None,
    credentials: CredentialsOption = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="Capture policy (TOML). Default: the fleet's, or every app but the denylist."
        ),
    ] = None,
) -> None:
    """Record this display ($DISPLAY) until SIGINT/SIGTERM, then flush and exit."""
    from demotrace.agent import AgentConfig, encode_config

    if not os.environ.get("DISPLAY"):
        raise fail("no $DISPLAY: record needs an X server (try `demotrace demo` on a machine without one)")
    config = AgentConfig(
        spool=spool,
        key=key,
        config_dir=config_dir(),
        device_id=local_device_id(),
        server=server,
        credentials=credentials,
        policy=policy,
    )
    # The recording runs in a fresh interpreter, same process id (signals and supervisors see no
    # difference), without this CLI's libraries: see demotrace/agent.py.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", "-m", "demotrace.agent", encode_config(config)])


@app.command()
def enroll(
    server: Annotated[str, typer.Option("--server", help="Collector URL.")],
    name: Annotated[str | None, typer.Option("--name", help="A label for this device.")] = None,
    secret: Annotated[str | None, typer.Option("--secret", envvar="DEMOTRACE_ENROLLMENT_SECRET")] = None,
    credentials: CredentialsOption = None,
) -> None:
    """Enroll this device with a collector; it gets its own upload token."""
    import httpx

    from demotrace.transport import default_credentials_path, save_credentials
    from demotrace.transport import enroll as enroll_device

    try:
        device = enroll_device(server, device_name=name or local_device_id(), secret=secret)
    except httpx.HTTPError as error:
        raise fail(f"cannot enroll with {server}: {error}") from error
    path = credentials or default_credentials_path()
    save_credentials(device, path)
    console.print(f"enrolled as {device.device_id}; credentials in {path}")


@app.command()
def server(
    data: Annotated[Path, typer.Option("--data", help="Collector data folder (database and blobs).")] = Path(
        "collector-data"
    ),
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
    from demotrace.collector.app import ServerConfigError, serve
    from demotrace.collector.service import DEFAULT_MAX_CONCURRENT_INGESTS

    try:
        serve(
            data,
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


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    spool: Annotated[Path | None, typer.Option("--spool", help="Build from a device spool.")] = None,
    from_server: Annotated[
        Path | None, typer.Option("--from-server", help="Build from a collector data folder.")
    ] = None,
    key: KeyOption = None,
    idle_gap: Annotated[float, typer.Option(help="Seconds of idle that split episodes.")] = 60.0,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format", help="Export format, repeatable: agentnet, parquet, webdataset, adp (default: all)."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (one process) or ray (Ray Data over this machine's cores).")
    ] = "local",
) -> None:
    """Build an agent-training dataset (trajectories.jsonl, images/, exports, summary, viewer, report)."""
    from demotrace.dataset.build import build_dataset
    from demotrace.dataset.options import ALL_FORMATS

    if (spool is None) == (from_server is None):
        raise fail("give exactly one of --spool DIR or --from-server DIR")
    unknown = sorted(set(formats or ()) - set(ALL_FORMATS))
    if unknown:
        raise fail(f"unknown --format {', '.join(unknown)} (known: {', '.join(ALL_FORMATS)})")
    chosen = [name for name in ALL_FORMATS if name in formats] if formats else list(ALL_FORMATS)
    if engine not in ("local", "ray"):
        raise fail(f"unknown --engine {engine} (known: local, ray)")
    if engine == "ray":
        from demotrace.dataset.distributed import CollectorFrames, SpoolFrames, build_dataset_ray
    if spool is not None:
        from demotrace.spool import SpoolError, open_spool

        if not (spool / "spool.db").exists():
            raise fail(f"{spool} is not a spool folder (no spool.db)")
        try:
            store = open_spool(spool, key)
            if engine == "ray":
                summary = build_dataset_ray(
                    store.batches(), SpoolFrames(spool, key), out, idle_gap=idle_gap, formats=chosen
                )
            else:
                summary = build_dataset(
                    store.batches(), store.load_frame, out, idle_gap=idle_gap, formats=chosen
                )
        except SpoolError as error:
            raise fail(str(error)) from error
    else:
        assert from_server is not None
        from demotrace.collector.reader import CollectorReader

        if not from_server.is_dir():
            raise fail(f"{from_server} is not a collector data folder")
        reader = CollectorReader(from_server)
        if engine == "ray":
            summary = build_dataset_ray(
                reader.iter_batches(), CollectorFrames(from_server), out, idle_gap=idle_gap, formats=chosen
            )
        else:
            summary = build_dataset(
                reader.iter_batches(), reader.load_frame, out, idle_gap=idle_gap, formats=chosen
            )
    print_build_summary(summary)


def print_build_summary(summary: object) -> None:
    import msgspec

    console.print_json(msgspec.json.encode(summary).decode())


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="Length of the scripted session.")] = 45.0,
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes everything.")] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="Seed of the scripted session.")] = 1,
) -> None:
    """Record a scripted session on a virtual desktop, upload it, build the dataset, print a summary."""
    from demotrace.demo.run import run_demo

    raise typer.Exit(run_demo(out, seconds=seconds, seed=seed, console=console))


@app.command()
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
    code = record_local(
        spool or data_dir() / "spool", data or data_dir() / "collector", port, console=console
    )
    raise typer.Exit(code)


def _register_sub_commands() -> None:
    from demotrace.cli_control import register_control_commands
    from demotrace.cli_exemption import register_exemption_commands
    from demotrace.cli_replay import replay as replay_command

    app.command(name="replay")(replay_command)
    register_control_commands(app)
    register_exemption_commands(app)


_register_sub_commands()


def main() -> None:
    app(prog_name="demotrace")


if __name__ == "__main__":
    main()
    sys.exit(0)
