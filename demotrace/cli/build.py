"""``demotrace build``: a dataset from a device spool, a collector data folder, or a fleet collector's
database and blob store (PostgreSQL + S3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from demotrace.cli.shared import KeyOption, fail, print_fields, stderr
from demotrace.wording import plural, size_text

if TYPE_CHECKING:
    from demotrace.collector.store import CollectorLocation
    from demotrace.dataset.progress import BuildProgress
    from demotrace.dataset.write import BuildSummary

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
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write (replaced whole).")],
    spool: Annotated[
        Path | None, typer.Option("--spool", help="Build from a device spool (see `demotrace paths`).")
    ] = None,
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
            "--format",
            metavar="FORMAT",
            help="Export format, repeatable: agentnet, parquet, webdataset, adp (default: all).",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            metavar="ENGINE",
            help="local (a process per core of this machine) or ray (Ray over this machine or a cluster).",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="With --engine ray: join this Ray cluster (e.g. ray://head:10001)."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the dataset already in --out.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the build summary as JSON on stdout, no table.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Ray's own logs (with --engine ray).")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes of the local engine (default: one per core), or with --engine ray and no "
            "--ray-address, Ray's worker processes.",
        ),
    ] = None,
) -> None:
    """Build an agent-training dataset (trajectories.jsonl, images/, exports, summary, viewer, report,
    manifest.json: the sessions it was built from, for `demotrace datasets check`).

    The build is written beside --out and swapped in when it is complete: an existing dataset is
    replaced whole (with --overwrite), and a failed build leaves nothing behind.
    """
    from demotrace.dataset.lineage import BuildSource
    from demotrace.dataset.options import ALL_FORMATS
    from demotrace.dataset.staging import (
        DatasetExists,
        check_output_folder,
        moved_summary,
        pseudonym_key_for,
        staged_build,
    )

    from_collector = from_server is not None or database_url is not None
    if (spool is None) == (not from_collector):
        raise fail(
            "give exactly one source: --spool DIR, or --from-server DIR, or --database-url URL --blobs URL "
            "(`demotrace paths` shows yours)"
        )
    unknown = sorted(set(formats or ()) - set(ALL_FORMATS))
    if unknown:
        raise fail(f"unknown --format {', '.join(unknown)} (known: {', '.join(ALL_FORMATS)})")
    chosen = [name for name in ALL_FORMATS if name in formats] if formats else list(ALL_FORMATS)
    if engine not in ("local", "ray"):
        raise fail(f"unknown --engine {engine} (known: local, ray)")
    if ray_address is not None and engine != "ray":
        raise fail("--ray-address needs --engine ray")
    try:
        check_output_folder(out, overwrite)
    except DatasetExists as error:
        raise fail(str(error)) from error
    if spool is not None and not (spool / "spool.db").exists():
        raise fail(f"{spool} is not a spool folder (no spool.db)")
    if from_server is not None and database_url is None and not (from_server / "collector.db").is_file():
        raise fail(f"{from_server} is not a collector data folder (no collector.db)")
    location = None if spool is not None else collector_location(from_server, database_url, blobs, master_key)
    pseudonym_key, key_path = pseudonym_key_for(out)
    settings: dict[str, Any] = {"idle_gap": idle_gap, "formats": chosen, "pseudonym_key": pseudonym_key}
    ray = RayChoice(engine == "ray", ray_address, workers, verbose)
    try:
        with staged_build(out) as staging, build_progress() as progress:
            if location is None:
                assert spool is not None
                settings["source"] = BuildSource({"kind": "spool", "spool": str(spool.resolve())})
                summary = _from_spool(spool, key, staging, settings, ray, progress)
            else:
                settings["source"] = BuildSource({"kind": "collector", **location.describe()})
                summary = _from_collector(location, staging, settings, ray, progress)
            summary = moved_summary(summary, staging, out, key_path)
    except ConnectionError as error:  # Ray's, when --ray-address does not answer
        raise fail(f"cannot join the Ray cluster at {ray_address}: {error}") from error
    if as_json:
        import msgspec

        print(msgspec.json.format(msgspec.json.encode(summary)).decode())
    else:
        print_build_summary(summary)


@dataclass(frozen=True)
class RayChoice:
    """--engine ray or not, and its cluster, worker count (also the local pool's size) and logs."""

    enabled: bool
    address: str | None
    workers: int | None
    verbose: bool


def _from_spool(
    spool: Path,
    key: Path | None,
    staging: Path,
    settings: dict[str, Any],
    ray: RayChoice,
    progress: Callable[[BuildProgress], None],
) -> BuildSummary:
    from demotrace.dataset.record_sources import SpoolRecords
    from demotrace.device.spool import SpoolError, open_spool

    build_source = settings.pop("source")
    try:
        open_spool(spool, key).close()  # a missing or malformed key is told here, in one line
        if ray.enabled:  # Ray's workers read the records from the spool by id
            from demotrace.dataset.ray_stores import build_dataset_from_store

            return build_dataset_from_store(
                SpoolRecords(spool, key),
                staging,
                num_cpus=ray.workers,
                address=ray.address,
                verbose=ray.verbose,
                progress=progress,
                build_source=build_source,
                **settings,
            )
        from demotrace.dataset.store_build import build_dataset_from_source

        return build_dataset_from_source(  # one session read at a time, by id
            SpoolRecords(spool, key),
            staging,
            workers=ray.workers,
            progress=progress,
            build_source=build_source,
            **settings,
        )
    except SpoolError as error:
        raise fail(str(error)) from error


def _from_collector(
    location: CollectorLocation,
    staging: Path,
    settings: dict[str, Any],
    ray: RayChoice,
    progress: Callable[[BuildProgress], None],
) -> BuildSummary:
    from demotrace.collector.reader import CollectorSource, ReaderError

    try:
        if ray.enabled:  # Ray's workers read the records from the stores by id
            from demotrace.dataset.ray_stores import build_dataset_from_store

            build_source = settings.pop("source")
            return build_dataset_from_store(
                CollectorSource(location),
                staging,
                num_cpus=ray.workers,
                address=ray.address,
                verbose=ray.verbose,
                progress=progress,
                build_source=build_source,
                **settings,
            )
        from demotrace.dataset.store_build import build_dataset_from_source

        build_source = settings.pop("source")
        return build_dataset_from_source(  # one session read at a time, by id
            CollectorSource(location),
            staging,
            workers=ray.workers,
            progress=progress,
            build_source=build_source,
            **settings,
        )
    except ReaderError as error:
        raise fail(str(error)) from error


@contextmanager
def build_progress() -> Iterator[Callable[[BuildProgress], None]]:
    """Bars on stderr while a build runs (sessions with their steps and images, then each output);
    they disappear when it ends, and are not drawn at all when stderr is not a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    sessions = bars.add_task("sessions", total=None)
    outputs: dict[str, Any] = {}

    def show(progress: BuildProgress) -> None:
        if progress.stage == "sessions":
            bars.update(
                sessions,
                total=progress.total or None,
                completed=progress.done,
                description=f"sessions: {plural(progress.steps, 'step')}, {plural(progress.images, 'image')}",
            )
            return
        for task in outputs.values():  # outputs are written one after the other
            bars.update(task, completed=1)
        if progress.stage != "done" and progress.stage not in outputs:
            outputs[progress.stage] = bars.add_task(f"writing {progress.stage}", total=1)

    with bars:
        yield show


def print_build_summary(summary: BuildSummary) -> None:
    """The build in a few lines on stdout: what was kept, and where to look."""
    dropped = {reason: count for reason, count in summary.episodes_dropped.items() if count}
    episodes = str(summary.episodes)
    if dropped:
        episodes += " (dropped: " + ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in dropped.items()) + ")"
    print_fields(
        [
            ("dataset", summary.out_dir),
            ("sessions", str(summary.sessions)),
            ("episodes", episodes),
            ("steps", f"{summary.steps} ({summary.steps_without_frame} without a frame)"),
            ("images", f"{summary.frames_written} ({size_text(summary.image_bytes)})"),
            ("formats", ", ".join(summary.formats)),
            ("viewer", summary.viewer_path),
            ("report", summary.report_path),
        ]
    )


def register_build_commands(app: typer.Typer) -> None:
    """Add build to the main ``demotrace`` command."""
    app.command("build")(build)
