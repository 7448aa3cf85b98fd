"""The local engine over a record store (a spool, or a collector's database + blobs) read by session:
the parent lists each session's batch ids from the store's metadata and hands those out; one process,
or each worker of a pool, reads one session's batches at a time, builds it, writes its images and
export pieces, and hands back only its output. So memory does not grow with the sessions of the store
(the whole store's events are never held at once), and the parent's work does not grow with the bytes.

The same per-session step (``build_session_by_ids``) runs in Ray's tasks (``ray_stores``), so both
engines write the same bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from demotrace.dataset.build import dataset_scrubber, process_session
from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S
from demotrace.dataset.lineage import BuildSource, LineageRecorder, write_manifest
from demotrace.dataset.options import ALL_FORMATS, BuildOptions, ExportFormat, ShardLimits, prepare_build
from demotrace.dataset.parallel import map_sessions_in_pool, usable_cores
from demotrace.dataset.privacy import KnownNames, Scrubber
from demotrace.dataset.progress import BuildProgress, ProgressCallback, no_progress
from demotrace.dataset.quality import QualityConfig
from demotrace.dataset.sessions import session_events, session_order
from demotrace.dataset.write import BuildSummary, SessionOutput, write_dataset
from demotrace.frames.resolver import resolving_loader
from demotrace.model import Batch, Frame

# (device id, session id, batch record ids in seq order)
SessionIds = tuple[str, str, list[str]]


class RecordReader(Protocol):
    def session_batch_ids(self) -> list[SessionIds]: ...

    def load_batches(self, record_ids: Iterable[str]) -> list[Batch]: ...

    def load_frame(self, frame_id: str) -> Frame | None: ...


class RecordSource(Protocol):
    """A picklable description of a record store; ``open()`` gives a reader (collector:
    ``CollectorSource``, spool: ``record_sources.SpoolRecords``)."""

    def open(self) -> AbstractContextManager[RecordReader]: ...


@dataclass
class OpenStore:
    """A worker's reader of the store and its frame resolver, kept for the worker's life."""

    reader: RecordReader

    def __post_init__(self) -> None:
        self.load_frame = resolving_loader(self.reader.load_frame)  # delta frames come back whole


@dataclass(frozen=True)
class BuiltSession:
    session_id: str
    start_wall: float
    output: SessionOutput | None  # None: the session has no header (skipped, but counted)


def build_session_by_ids(
    entry: SessionIds, options: BuildOptions, scrubber: Scrubber, store: OpenStore
) -> BuiltSession:
    """Read one session's batches by id and build it (images and export pieces written)."""
    _device_id, session_id, batch_ids = entry
    session = session_events(session_id, store.reader.load_batches(batch_ids))
    if session is None:
        return BuiltSession(session_id, 0.0, None)
    return BuiltSession(
        session_id, session.header.wall, process_session(session, options, scrubber, store.load_frame)
    )


def plan_from_store(
    source: RecordSource, extra_names: KnownNames | None
) -> tuple[list[SessionIds], LineageRecorder, Scrubber]:
    """Every session's ids from the store's metadata, the lineage they make, and the dataset's
    scrubber (every raw session and device id is a name to scrub: the one fact a session needs from
    the others)."""
    with source.open() as reader:
        sessions = reader.session_batch_ids()
    lineage = LineageRecorder()
    for device_id, session_id, batch_ids in sessions:
        lineage.add(device_id, session_id, batch_ids)
    scrubber = dataset_scrubber([s for _, s, _ in sessions], (d for d, _, _ in sessions), extra_names)
    return sessions, lineage, scrubber


def ordered_built(built: list[BuiltSession]) -> tuple[list[SessionOutput], int]:
    """The outputs in the dataset's session order, and how many sessions had no header."""
    kept = [entry for entry in built if entry.output is not None]
    without_header = len(built) - len(kept)
    kept.sort(key=lambda entry: session_order(entry.start_wall, entry.session_id))
    return [entry.output for entry in kept if entry.output is not None], without_header


def build_dataset_from_source(
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
    workers: int | None = None,
    progress: ProgressCallback = no_progress,
    build_source: BuildSource | None = None,
) -> BuildSummary:
    """``build.build_dataset`` over every session of ``source``, read one session at a time, in this
    process or on a pool of ``workers`` processes (default: one per usable core)."""
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
    count = len(sessions)
    pool_size = min(workers if workers is not None else usable_cores(), count)
    progress(BuildProgress("sessions", 0, count))
    built: list[BuiltSession] = []
    with source.open() as reader:
        store = OpenStore(reader)
        if pool_size > 1:
            mapped: Iterator[BuiltSession] = map_sessions_in_pool(
                build_session_by_ids, sessions, options, scrubber, source, pool_size, OpenStore
            )
        else:
            mapped = (build_session_by_ids(entry, options, scrubber, store) for entry in sessions)
        steps = images = 0
        for entry in mapped:
            built.append(entry)
            if entry.output is not None:
                steps += sum(len(episode.actions) for episode in entry.output.episodes)
                images += len(entry.output.image_files)
            progress(BuildProgress("sessions", len(built), count, steps, images))
        outputs, without_header = ordered_built(built)
        summary = write_dataset(  # the describer may send each episode's first frame
            options, outputs, len(outputs), without_header, scrubber, store.load_frame, progress=progress
        )
    source_description = build_source or BuildSource({"kind": "store"})
    write_manifest(out_dir, lineage.manifest(source_description, options.pseudonyms))
    return summary
