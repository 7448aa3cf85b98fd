"""The dataset build on Ray from a record store (a collector's database + blob store, or a spool):
plain Ray tasks, and the driver hands out record ids, never records. Each worker opens the store itself
(once per process), reads its sessions' batches and frames, and runs the same per-session step as the
local engine (``store_build.build_session_by_ids``), which also writes the session's images and export
pieces; the driver only reads the metadata, then concatenates the pieces (``write.write_dataset``).

So the bytes of a recording cross the network once, from the store to the worker that needs them, and
the driver's work does not grow with the records: throughput grows with the workers. Output is the
local engine's, byte for byte (same session order, same scrubber, same pseudonyms).

On a multi-machine cluster, every node must reach the stores (a database URL and s3:// blobs, with the
same master key) and write into the dataset folder (storage every node mounts).
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.distributed import ray_runtime
from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S
from demotrace.dataset.lineage import BuildSource, write_manifest
from demotrace.dataset.options import ALL_FORMATS, BuildOptions, ExportFormat, ShardLimits, prepare_build
from demotrace.dataset.privacy import KnownNames, Scrubber
from demotrace.dataset.progress import BuildProgress, ProgressCallback, no_progress
from demotrace.dataset.quality import QualityConfig
from demotrace.dataset.store_build import (
    BuiltSession,
    OpenStore,
    RecordSource,
    SessionIds,
    build_session_by_ids,
    ordered_built,
    plan_from_store,
)
from demotrace.dataset.write import BuildSummary, write_dataset
from demotrace.frames.resolver import resolving_loader

_PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
# Tasks per worker: enough that a slow session does not leave the other workers idle at the end, few
# enough that per-task overhead stays small next to the work.
_TASKS_PER_WORKER = 4


# --- in each worker process -------------------------------------------------------------------------

_stores: dict[bytes, OpenStore] = {}
_reader_stack = ExitStack()
_builds: dict[str, tuple[BuildOptions, Scrubber]] = {}


def _store(source: RecordSource) -> OpenStore:
    """This process's reader of ``source`` and its frame resolver, opened on first use and kept (a
    worker runs many tasks)."""
    key = pickle.dumps(source, _PICKLE_PROTOCOL)
    store = _stores.get(key)
    if store is None:
        store = OpenStore(_reader_stack.enter_context(source.open()))
        _stores[key] = store
    return store


def _settings(build_id: str, shared: list[Any]) -> tuple[BuildOptions, Scrubber]:
    """The build's options and scrubber, fetched from the object store once per worker and build."""
    import ray

    settings = _builds.get(build_id)
    if settings is None:
        _builds.clear()  # one build at a time per worker: drop the previous build's scrubber
        settings = ray.get(shared[0])
        _builds[build_id] = settings
    return settings


def process_sessions(
    source: RecordSource, build_id: str, shared: list[Any], sessions: Sequence[SessionIds]
) -> dict[str, Any]:
    """Read and build these sessions (``store_build.build_session_by_ids``: images and export pieces
    written here); ``cpu`` is the CPU seconds this worker spent on them."""
    started = time.process_time()
    options, scrubber = _settings(build_id, shared)
    store = _store(source)
    built = [build_session_by_ids(entry, options, scrubber, store) for entry in sessions]
    outputs = [entry.output for entry in built if entry.output is not None]
    return {
        "built": pickle.dumps(built, _PICKLE_PROTOCOL),
        "cpu": time.process_time() - started,
        "steps": sum(len(episode.actions) for output in outputs for episode in output.episodes),
        "images": sum(len(output.image_files) for output in outputs),
    }


# --- the driver -------------------------------------------------------------------------------------


def _chunks(sessions: list[SessionIds], parts: int) -> Iterator[list[SessionIds]]:
    """Sessions in about ``parts`` chunks of about equal batch counts, in order."""
    total = sum(len(ids) for _, _, ids in sessions)
    target = max(1, total // max(1, parts))
    chunk: list[SessionIds] = []
    size = 0
    for entry in sessions:
        chunk.append(entry)
        size += len(entry[2])
        if size >= target:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def build_dataset_from_store(
    source: RecordSource,
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
    build_source: BuildSource | None = None,
    timings: dict[str, float] | None = None,
    progress: ProgressCallback = no_progress,
    verbose: bool = False,
) -> BuildSummary:
    """``build.build_dataset`` over every session of ``source``, on Ray (a local one with ``num_cpus``
    workers, or the cluster at ``address``); the driver hands out record ids only. ``timings``, when
    given, gets the seconds of each phase: "plan" (metadata), "sessions" (on Ray), "write" (driver), and
    "worker_cpu", the CPU seconds the workers spent on the sessions."""
    import ray

    clock = time.perf_counter()

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
    sessions, lineage, scrubber = plan_from_store(source, extra_names)
    built: list[BuiltSession] = []
    worker_cpu = 0.0
    planned = time.perf_counter()
    progress(BuildProgress("sessions", 0, len(sessions)))
    with ray_runtime(num_cpus, address, verbose=verbose):
        if sessions:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
            shared = [ray.put((options, scrubber))]  # in a list: workers fetch it once, not per task
            task = ray.remote(process_sessions)
            build_id = uuid.uuid4().hex
            pending = [
                task.remote(source, build_id, shared, chunk)
                for chunk in _chunks(sessions, workers * _TASKS_PER_WORKER)
            ]
            steps = images = 0
            while pending:  # as they finish, to tell progress; the order is restored below
                done, pending = ray.wait(pending, num_returns=1)
                result = ray.get(done[0])
                built += pickle.loads(result["built"])
                worker_cpu += result["cpu"]
                steps += result["steps"]
                images += result["images"]
                progress(BuildProgress("sessions", len(built), len(sessions), steps, images))
    mapped = time.perf_counter()
    outputs, without_header = ordered_built(built)
    with source.open() as reader:  # the describer may send each episode's first frame
        summary = write_dataset(
            options,
            outputs,
            len(outputs),
            without_header,
            scrubber,
            resolving_loader(reader.load_frame),
            progress=progress,
        )
    write_manifest(
        out_dir, lineage.manifest(build_source or BuildSource({"kind": "store"}), options.pseudonyms)
    )
    if timings is not None:
        timings.update(plan=planned - clock, sessions=mapped - planned, write=time.perf_counter() - mapped)
        timings["worker_cpu"] = worker_cpu
    return summary
