"""``demotrace build``: a dataset from a device spool or a collector data folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from demotrace.cli.shared import KeyOption, fail, print_fields, stderr

if TYPE_CHECKING:
    from demotrace.dataset.progress import BuildProgress
    from demotrace.dataset.write import BuildSummary


def build(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write (replaced whole).")],
    spool: Annotated[
        Path | None, typer.Option("--spool", help="Build from a device spool (see `demotrace paths`).")
    ] = None,
    from_server: Annotated[
        Path | None, typer.Option("--from-server", help="Build from a collector data folder.")
    ] = None,
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
            help="local (a process per core of this machine) or ray (Ray Data).",
        ),
    ] = "local",
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
        typer.Option("--workers", min=1, help="Processes of the local engine (default: one per core)."),
    ] = None,
) -> None:
    """Build an agent-training dataset (trajectories.jsonl, images/, exports, summary, viewer, report).

    The build is written beside --out and swapped in when it is complete: an existing dataset is
    replaced whole (with --overwrite), and a failed build leaves nothing behind.
    """
    from demotrace.dataset.options import ALL_FORMATS
    from demotrace.dataset.staging import (
        DatasetExists,
        check_output_folder,
        moved_summary,
        pseudonym_key_for,
        staged_build,
    )

    if (spool is None) == (from_server is None):
        raise fail("give exactly one of --spool DIR or --from-server DIR (`demotrace paths` shows yours)")
    unknown = sorted(set(formats or ()) - set(ALL_FORMATS))
    if unknown:
        raise fail(f"unknown --format {', '.join(unknown)} (known: {', '.join(ALL_FORMATS)})")
    chosen = [name for name in ALL_FORMATS if name in formats] if formats else list(ALL_FORMATS)
    if engine not in ("local", "ray"):
        raise fail(f"unknown --engine {engine} (known: local, ray)")
    try:
        check_output_folder(out, overwrite)
    except DatasetExists as error:
        raise fail(str(error)) from error
    if spool is not None and not (spool / "spool.db").exists():
        raise fail(f"{spool} is not a spool folder (no spool.db)")
    if from_server is not None and not (from_server / "collector.db").is_file():
        raise fail(f"{from_server} is not a collector data folder (no collector.db)")
    pseudonym_key, key_path = pseudonym_key_for(out)
    settings: dict[str, Any] = {"idle_gap": idle_gap, "formats": chosen, "pseudonym_key": pseudonym_key}
    local_settings: dict[str, Any] = {"workers": workers}
    with staged_build(out) as staging, build_progress() as progress:
        settings["progress"] = progress
        if spool is not None:
            summary = _from_spool(spool, key, staging, engine, settings, verbose, local_settings)
        else:
            assert from_server is not None
            summary = _from_server(from_server, staging, engine, settings, verbose, local_settings)
        summary = moved_summary(summary, staging, out, key_path)
    if as_json:
        import msgspec

        print(msgspec.json.format(msgspec.json.encode(summary)).decode())
    else:
        print_build_summary(summary)


def _from_spool(
    spool: Path,
    key: Path | None,
    staging: Path,
    engine: str,
    settings: dict[str, Any],
    verbose: bool,
    local_settings: dict[str, Any],
) -> BuildSummary:
    from demotrace.dataset.frame_sources import SpoolFrames
    from demotrace.device.spool import SpoolError, open_spool

    try:
        store = open_spool(spool, key)
        if engine == "ray":
            from demotrace.dataset.distributed import build_dataset_ray

            frames = SpoolFrames(spool, key)
            return build_dataset_ray(store.batches(), frames, staging, verbose=verbose, **settings)
        from demotrace.dataset.build import build_dataset

        return build_dataset(store.batches(), SpoolFrames(spool, key), staging, **settings, **local_settings)
    except SpoolError as error:
        raise fail(str(error)) from error


def _from_server(
    data: Path,
    staging: Path,
    engine: str,
    settings: dict[str, Any],
    verbose: bool,
    local_settings: dict[str, Any],
) -> BuildSummary:
    from demotrace.collector.reader import CollectorReader
    from demotrace.dataset.frame_sources import CollectorFrames

    if engine == "ray":
        from demotrace.dataset.distributed import build_dataset_ray

        with CollectorReader(data) as reader:
            batches = reader.iter_batches()
            return build_dataset_ray(batches, CollectorFrames(data), staging, verbose=verbose, **settings)
    from demotrace.dataset.build import build_dataset

    with CollectorReader(data) as reader:
        return build_dataset(
            reader.iter_batches(), CollectorFrames(data), staging, **settings, **local_settings
        )


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
                description=f"sessions: {progress.steps} steps, {progress.images} images",
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
            ("images", f"{summary.frames_written} ({summary.image_bytes / 1e6:.1f} MB)"),
            ("formats", ", ".join(summary.formats)),
            ("viewer", summary.viewer_path),
            ("report", summary.report_path),
        ]
    )


def register_build_commands(app: typer.Typer) -> None:
    """Add build to the main ``demotrace`` command."""
    app.command("build")(build)
