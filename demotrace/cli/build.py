"""``demotrace build``: a dataset from a device spool, a collector data folder, or a fleet collector's
database and blob store (PostgreSQL + S3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from demotrace.cli.shared import KeyOption, fail, stderr

if TYPE_CHECKING:
    from demotrace.collector.store import CollectorLocation

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DEMOTRACE_DATABASE_URL",
        help="A collector's database (postgresql+psycopg://...): build from it instead of a data folder.",
    ),
]
BlobsOption = Annotated[
    str | None,
    typer.Option(
        "--blobs",
        envvar="DEMOTRACE_BLOBS",
        help="The collector's blob store: s3://bucket/prefix or a folder.",
    ),
]
MasterKeyOption = Annotated[
    Path | None,
    typer.Option("--master-key", help="The collector's master key file (default: $DEMOTRACE_MASTER_KEY)."),
]


def collector_location(
    from_server: Path | None, database_url: str | None, blobs: str | None, master_key: Path | None
) -> CollectorLocation:
    """Where a collector's data is, from the command's options; fails with a message when incomplete."""
    from demotrace.collector.store import CollectorLocation

    if from_server is not None and not from_server.is_dir():
        raise fail(f"{from_server} is not a collector data folder")
    if from_server is None and blobs is None:
        raise fail("--database-url needs --blobs (s3://bucket/prefix or the collector's blob folder)")
    return CollectorLocation(from_server, database_url, blobs, master_key)


def build(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    spool: Annotated[Path | None, typer.Option("--spool", help="Build from a device spool.")] = None,
    from_server: Annotated[
        Path | None, typer.Option("--from-server", help="Build from a collector data folder.")
    ] = None,
    database_url: DatabaseUrlOption = None,
    blobs: BlobsOption = None,
    master_key: MasterKeyOption = None,
    key: KeyOption = None,
    idle_gap: Annotated[float, typer.Option(help="Seconds of idle that split episodes.")] = 60.0,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format", help="Export format, repeatable: agentnet, parquet, webdataset, adp (default: all)."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (one process) or ray (Ray over this machine or a cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="With --engine ray: join this Ray cluster (e.g. ray://head:10001)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="With --engine ray and no cluster: worker processes."),
    ] = None,
) -> None:
    """Build an agent-training dataset (trajectories.jsonl, images/, exports, summary, viewer, report,
    manifest.json: the sessions it was built from, for `demotrace datasets check`)."""
    from demotrace.dataset.build import build_dataset
    from demotrace.dataset.lineage import BuildSource
    from demotrace.dataset.options import ALL_FORMATS

    from_collector = from_server is not None or database_url is not None
    if (spool is None) == (not from_collector):
        raise fail(
            "give exactly one source: --spool DIR, or --from-server DIR, or --database-url URL --blobs URL"
        )
    unknown = sorted(set(formats or ()) - set(ALL_FORMATS))
    if unknown:
        raise fail(f"unknown --format {', '.join(unknown)} (known: {', '.join(ALL_FORMATS)})")
    chosen = [name for name in ALL_FORMATS if name in formats] if formats else list(ALL_FORMATS)
    if engine not in ("local", "ray"):
        raise fail(f"unknown --engine {engine} (known: local, ray)")
    if ray_address is not None and engine != "ray":
        raise fail("--ray-address needs --engine ray")
    if spool is not None:
        from demotrace.dataset.distributed import SpoolFrames, build_dataset_ray
        from demotrace.device.spool import SpoolError, open_spool

        if not (spool / "spool.db").exists():
            raise fail(f"{spool} is not a spool folder (no spool.db)")
        source = BuildSource({"kind": "spool", "spool": str(spool.resolve())})
        try:
            store = open_spool(spool, key)
            if engine == "ray":
                summary = build_dataset_ray(
                    store.batches(),
                    SpoolFrames(spool, key),
                    out,
                    idle_gap=idle_gap,
                    formats=chosen,
                    num_cpus=workers,
                    address=ray_address,
                    source=source,
                )
            else:
                summary = build_dataset(
                    store.batches(), store.load_frame, out, idle_gap=idle_gap, formats=chosen, source=source
                )
        except SpoolError as error:
            raise fail(str(error)) from error
    else:
        from demotrace.collector.reader import CollectorReader, CollectorSource, ReaderError

        location = collector_location(from_server, database_url, blobs, master_key)
        source = BuildSource({"kind": "collector", **location.describe()})
        try:
            if engine == "ray":
                from demotrace.dataset.ray_stores import build_dataset_from_store

                summary = build_dataset_from_store(
                    CollectorSource(location),
                    out,
                    idle_gap=idle_gap,
                    formats=chosen,
                    num_cpus=workers,
                    address=ray_address,
                    build_source=source,
                )
            else:
                with CollectorReader(location=location) as reader:
                    summary = build_dataset(
                        reader.iter_batches(),
                        reader.load_frame,
                        out,
                        idle_gap=idle_gap,
                        formats=chosen,
                        source=source,
                    )
        except ReaderError as error:
            raise fail(str(error)) from error
    print_build_summary(summary)


def print_build_summary(summary: object) -> None:
    import msgspec

    stderr.print_json(msgspec.json.encode(summary).decode())


def register_build_commands(app: typer.Typer) -> None:
    """Add build to the main ``demotrace`` command."""
    app.command("build")(build)
