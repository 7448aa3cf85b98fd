"""The dataset build on Ray Data: the same per-session transforms as ``build.build_dataset``, spread
over a Ray cluster (or local worker processes), with output identical to the local engine's.

The path of a distributed build:

1. the driver reads the batches and hands them to Ray, one row per batch;
2. Ray groups them by session id, and each group becomes one session (``sessions.session_events``);
3. the driver takes only the sessions' ids, devices and start times back, to build the dataset-wide
   scrubber (every raw session and device id is a name to scrub) — the one global fact a session needs;
4. Ray maps each session through ``build.process_session`` (reduce, scrub, pseudonyms, split, quality
   filter, frames written to ``OUT/images/``) in worker processes;
5. the driver sorts the sessions' outputs into the local engine's order and writes every export with
   ``write.write_dataset`` (the optional describer runs there too: its give-up rule counts failures in
   a row across the whole dataset, so it must see the episodes in order).

Frames: the workers get a ``frame_sources.FrameSource`` (a collector data folder, a spool folder and
its key path, or a frame map) that each opens itself. Workers write images into the dataset folder
themselves: on a multi-machine cluster it must be on storage every node mounts.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from demotrace.dataset.build import dataset_scrubber, process_session
from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S
from demotrace.dataset.frame_sources import CollectorFrames, FrameMap, FrameSource, SpoolFrames
from demotrace.dataset.lineage import BuildSource, LineageRecorder, write_manifest
from demotrace.dataset.options import ALL_FORMATS, BuildOptions, ExportFormat, ShardLimits, prepare_build
from demotrace.dataset.privacy import KnownNames, Scrubber
from demotrace.dataset.progress import BuildProgress, ProgressCallback, no_progress
from demotrace.dataset.quality import QualityConfig
from demotrace.dataset.sessions import session_events, session_order
from demotrace.dataset.write import BuildSummary, SessionOutput, write_dataset
from demotrace.frames.resolver import resolving_loader
from demotrace.model import Batch

if TYPE_CHECKING:
    import ray.data

__all__ = ["CollectorFrames", "FrameMap", "FrameSource", "SpoolFrames", "build_dataset_ray", "ray_runtime"]

# Rows cross Ray as pickled Python objects, not re-encoded structs: pickle keeps every value exactly as
# the local engine sees it (an int in a float field stays an int), so the outputs are byte-identical.
_PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


# A local Ray's workers run at the priority of the local engine's pool workers: Ray's default (nice
# 15) leaves them the scraps of a busy machine (measured here: a third of the local engine's steps per
# second of wall time at the same CPU per step).
LOCAL_RAY_SYSTEM_CONFIG: dict[str, Any] = {"worker_niceness": 0}


@dataclass(frozen=True)
class SessionInfo:
    """What the driver needs of a session before mapping it: its scrubbed names and its place."""

    session_id: str
    device_id: str
    start_wall: float


# --- steps run by Ray workers (pure but for the frames written) ---------------------------------------


def _group_to_session(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One session id's batch rows → one session row (``has_header`` False: skipped, but counted)."""
    arrival = np.argsort(group["arrival"], kind="stable")  # groupby does not keep arrival order
    batches: list[Batch] = [pickle.loads(group["batch"][index]) for index in arrival]
    session_id = str(group["session_id"][0])
    session = session_events(session_id, batches)
    return {
        "session_id": np.array([session_id], dtype=object),
        "has_header": np.array([session is not None]),
        "device_id": np.array([batches[0].device_id], dtype=object),
        "start_wall": np.array([session.header.wall if session else 0.0], dtype=np.float64),
        "session": np.array([pickle.dumps(session, _PICKLE_PROTOCOL)], dtype=object),
    }


def _map_session_rows(
    rows: dict[str, np.ndarray], options: BuildOptions, scrubber: Scrubber, frames: FrameSource
) -> dict[str, np.ndarray]:
    """Session rows → their outputs (sessions without a header give none). The frame source is opened
    per call: cheap next to a session's work, and a plain task needs no actor to keep it open."""
    kept = [index for index, has_header in enumerate(rows["has_header"]) if has_header]
    outputs = []
    with frames.open() as raw_frames:
        load_frame = resolving_loader(raw_frames)  # delta frames come back as whole images
        for index in kept:
            session = pickle.loads(rows["session"][index])
            output = process_session(session, options, scrubber, load_frame)
            outputs.append(pickle.dumps(output, _PICKLE_PROTOCOL))
    return {
        "session_id": rows["session_id"][kept],
        "start_wall": rows["start_wall"][kept],
        "output": np.array(outputs, dtype=object),
    }


# --- the driver ---------------------------------------------------------------------------------------


def _batch_rows(records: Iterable[Batch]) -> list[dict[str, Any]]:
    return [
        {"arrival": index, "session_id": batch.session_id, "batch": pickle.dumps(batch, _PICKLE_PROTOCOL)}
        for index, batch in enumerate(records)
    ]


def ordered_sessions(infos: Iterable[SessionInfo]) -> list[SessionInfo]:
    return sorted(infos, key=lambda info: session_order(info.start_wall, info.session_id))


def ordered_outputs(rows: Iterable[Mapping[str, Any]]) -> list[SessionOutput]:
    """The workers' outputs in the local engine's session order (Ray returns them in any order)."""
    ranked = sorted(rows, key=lambda row: session_order(float(row["start_wall"]), str(row["session_id"])))
    return [pickle.loads(row["output"]) for row in ranked]


@contextmanager
def ray_runtime(
    num_cpus: int | None = None, address: str | None = None, *, verbose: bool = False
) -> Iterator[None]:
    """Ray for the length of a build: an already initialised Ray is used as it is (and left running);
    otherwise a local one is started (or ``address`` joined) and, if local, shut down at the end.
    Unless ``verbose``, Ray's own logging (start-up, workers' output, Ray Data's plans) stays quiet."""
    import ray

    if ray.is_initialized():
        yield
        return
    quiet: dict[str, Any] = {}
    if not verbose:
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        # Ray Data sets its loggers' level from this variable when it is first imported; if it was
        # imported already, the level is set here directly.
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
        import ray.data

        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if address is not None:
        ray.init(address=address, **quiet)
        yield  # the cluster is the caller's: stay connected
        return
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        ignore_reinit_error=True,
        _system_config=LOCAL_RAY_SYSTEM_CONFIG,
        **quiet,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _cluster_cpus() -> int:
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)))


@contextmanager
def _data_settings() -> Iterator[None]:
    """Ray Data settings for a build, restored afterwards (the context is the whole driver's)."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    context = DataContext.get_current()
    saved = (context.enable_progress_bars, context.shuffle_strategy)
    context.enable_progress_bars = False  # tqdm bars per stage; the CLI prints its own summary
    # The hash shuffle starts aggregator actors: measured here, twice as slow as a sort for a groupby.
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        yield
    finally:
        context.enable_progress_bars, context.shuffle_strategy = saved


def _grouped_sessions(rows: list[dict[str, Any]]) -> ray.data.Dataset:
    import ray.data

    # Ray's defaults (up to 200 blocks, sorted into as many partitions) make thousands of tiny shuffle
    # tasks for a few thousand batches; one block and partition per core keeps every core busy.
    cores = _cluster_cpus()
    batches = ray.data.from_items(rows, override_num_blocks=min(cores, len(rows)))
    grouped: ray.data.Dataset = batches.groupby("session_id", num_partitions=cores).map_groups(
        _group_to_session, batch_format="numpy"
    )
    materialized: ray.data.Dataset = grouped.materialize()
    return materialized


@dataclass(frozen=True)
class MappedSessions:
    outputs: list[SessionOutput]  # in the dataset's session order
    sessions: int
    without_header: int
    scrubber: Scrubber


def build_dataset_ray(
    records: Iterable[Batch],
    frames: FrameSource,
    out_dir: Path,
    idle_gap: float = DEFAULT_IDLE_GAP_S,
    *,
    formats: Collection[ExportFormat] = ALL_FORMATS,
    quality: QualityConfig | None = None,
    pseudonym_key: bytes | None = None,
    extra_names: KnownNames | None = None,
    describer: DescriberConfig | None = None,
    shard_limits: ShardLimits | None = None,
    num_cpus: int | None = None,
    address: str | None = None,
    progress: ProgressCallback = no_progress,
    verbose: bool = False,
    source: BuildSource | None = None,
) -> BuildSummary:
    """``build.build_dataset`` on Ray Data, same arguments and same output; frames come from a
    ``FrameSource`` each worker opens. ``num_cpus``: worker processes of a local Ray (default: all
    cores); ``address``: join that cluster instead (left running). A Ray the caller initialised is used."""
    options = prepare_build(
        out_dir,
        idle_gap,
        formats=formats,
        quality=quality,
        pseudonym_key=pseudonym_key,
        extra_names=extra_names,
        describer=describer,
        shard_limits=shard_limits,
    )
    lineage = LineageRecorder()
    rows = _batch_rows(lineage.observe(records))
    progress(BuildProgress("sessions", 0, 0))  # the count is known once Ray has grouped the batches
    with ray_runtime(num_cpus, address, verbose=verbose), _data_settings():
        mapped = _map_sessions(rows, frames, options, extra_names)
    steps = sum(len(episode.actions) for output in mapped.outputs for episode in output.episodes)
    images = len({name for output in mapped.outputs for name in output.image_files})
    progress(BuildProgress("sessions", mapped.sessions, mapped.sessions, steps, images))
    with frames.open() as raw_frames:  # the describer may send each episode's first frame
        load_frame = resolving_loader(raw_frames)
        summary = write_dataset(
            options,
            mapped.outputs,
            mapped.sessions,
            mapped.without_header,
            mapped.scrubber,
            load_frame,
            progress=progress,
        )
    write_manifest(out_dir, lineage.manifest(source or BuildSource({"kind": "records"}), options.pseudonyms))
    return summary


def _map_sessions(
    rows: list[dict[str, Any]], frames: FrameSource, options: BuildOptions, extra_names: KnownNames | None
) -> MappedSessions:
    """Group the batch rows into sessions and map each through ``process_session`` on Ray."""
    heads: list[dict[str, Any]] = []
    grouped = None
    if rows:  # Ray cannot group an empty dataset: it has no columns
        grouped = _grouped_sessions(rows)
        heads = grouped.select_columns(["session_id", "has_header", "device_id", "start_wall"]).take_all()
    infos = ordered_sessions(
        SessionInfo(str(row["session_id"]), str(row["device_id"]), float(row["start_wall"]))
        for row in heads
        if row["has_header"]
    )
    # Every session's ids are scrubbed, headerless ones too, as the local engine does.
    scrubber = dataset_scrubber(
        [str(row["session_id"]) for row in heads], (str(row["device_id"]) for row in heads), extra_names
    )
    outputs: list[SessionOutput] = []
    if grouped is not None and infos:
        mapped = grouped.map_batches(
            partial(_map_session_rows, options=options, scrubber=scrubber, frames=frames),
            batch_size=1,  # a session is the unit of work: one per call keeps every worker busy
            batch_format="numpy",
        )
        outputs = ordered_outputs(mapped.take_all())
    return MappedSessions(outputs, len(infos), len(heads) - len(infos), scrubber)
