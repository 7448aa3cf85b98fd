"""``demotrace build``: a dataset from a device spool or a collector data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import KeyOption, fail, stderr


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
        str,
        typer.Option("--engine", help="local (a process per core of this machine) or ray (Ray Data)."),
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes of the local engine (default: one per core)."),
    ] = None,
) -> None:
    """Build an agent-training dataset (trajectories.jsonl, images/, exports, summary, viewer, report)."""
    from demotrace.dataset.build import build_dataset
    from demotrace.dataset.frame_sources import CollectorFrames, SpoolFrames
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
        from demotrace.dataset.distributed import build_dataset_ray
    if spool is not None:
        from demotrace.device.spool import SpoolError, open_spool

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
                    store.batches(),
                    SpoolFrames(spool, key),
                    out,
                    idle_gap=idle_gap,
                    formats=chosen,
                    workers=workers,
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
                reader.iter_batches(),
                CollectorFrames(from_server),
                out,
                idle_gap=idle_gap,
                formats=chosen,
                workers=workers,
            )
    print_build_summary(summary)


def print_build_summary(summary: object) -> None:
    import msgspec

    stderr.print_json(msgspec.json.encode(summary).decode())


def register_build_commands(app: typer.Typer) -> None:
    """Add build to the main ``demotrace`` command."""
    app.command("build")(build)
