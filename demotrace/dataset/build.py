"""Batches + frames → a dataset folder (the I/O edge around the pure transforms).

OUT/trajectories.jsonl        one episode per line (AgentNet style, see export/agentnet.py)   "agentnet"
OUT/parquet/train-*.parquet   one step per row, images embedded (export/parquet.py)          "parquet"
OUT/webdataset/shard-*.tar    one sample per step (export/wds.py)                            "webdataset"
OUT/adp/trajectories.jsonl    Agent Data Protocol records (export/adp.py)                    "adp"
OUT/images/                   each step's pre-action frame, once per frame, in its stored encoding
OUT/summary.json              counts and sizes
OUT/index.html                a viewer to check the result by eye
OUT/report.html               plots: actions, episode lengths, apps, redactions, frames, bytes
../.OUT.pseudonym-key         the secret of the id pseudonyms, beside OUT (0600; not written if given)

The path of a build: sessions → actions → scrubbed text and pseudonymous ids (privacy.py) → episodes →
quality filter (quality.py) → optional model-written instructions (describe.py) → exports.
Here: the per-session work and the local engine; sessions.py groups batches into sessions, options.py
checks the settings and reads the key, images.py writes the frames, write.py writes everything else,
parallel.py spreads the sessions over a pool of processes when the frames come from a ``FrameSource``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S, Episode, split_episodes
from demotrace.dataset.export.agentnet import episode_to_trajectory
from demotrace.dataset.frame_sources import FrameSource
from demotrace.dataset.images import ImageWriter
from demotrace.dataset.lineage import BuildSource, LineageRecorder, write_manifest
from demotrace.dataset.options import ALL_FORMATS, BuildOptions, ExportFormat, ShardLimits, prepare_build
from demotrace.dataset.parallel import map_sessions_in_pool, usable_cores
from demotrace.dataset.pieces import piece_stem, write_session_pieces
from demotrace.dataset.privacy import (
    KnownNames,
    Pseudonyms,
    Scrubber,
    TextScrubber,
    local_names,
    pseudonymous_header,
    scrub_actions,
    scrub_markers,
)
from demotrace.dataset.progress import BuildProgress, ProgressCallback, no_progress
from demotrace.dataset.quality import QualityConfig, filter_episodes
from demotrace.dataset.reduce import reduce_events
from demotrace.dataset.sessions import SessionEvents, collect_sessions
from demotrace.dataset.write import BuildSummary, SessionOutput, write_dataset
from demotrace.frames.resolver import resolving_loader
from demotrace.model import Batch, Frame


def dataset_scrubber(
    session_ids: Sequence[str], device_ids: Iterable[str], extra_names: KnownNames | None
) -> Scrubber:
    """Names to scrub: this machine's user and host, the caller's, and every raw device and session id
    of the dataset (an id typed or shown in a title would undo its pseudonym)."""
    own_ids = KnownNames(
        device_ids=tuple(sorted(set(device_ids))), session_ids=tuple(sorted(set(session_ids)))
    )
    names = local_names().merged(own_ids)
    if extra_names is not None:
        names = names.merged(extra_names)
    return Scrubber(TextScrubber(names))


def private_episodes(
    sessions: Sequence[SessionEvents], pseudonyms: Pseudonyms, scrubber: Scrubber, idle_gap: float
) -> list[Episode]:
    """Every session's episodes (empty marked tasks included, for the quality counts), with scrubbed
    text and pseudonymous session and device ids; frame ids stay raw here (the image writer maps them)."""
    episodes: list[Episode] = []
    for session in sessions:
        actions = scrub_actions(reduce_events(session.header, session.events), scrubber)
        events = scrub_markers(session.events, scrubber)
        header = pseudonymous_header(session.header, session.session_id, pseudonyms)
        episodes += split_episodes(
            header.session_id, header, events, actions, idle_gap, keep_empty_tasks=True
        )
    return episodes


def process_session(
    session: SessionEvents,
    options: BuildOptions,
    scrubber: Scrubber,
    load_frame: Callable[[str], Frame | None],
) -> SessionOutput:
    """Reduce, scrub, split and filter one session and write the frames of its kept episodes: the unit
    of work of every engine (sessions are independent once the dataset's scrubber is known)."""
    episodes = private_episodes([session], options.pseudonyms, scrubber, options.idle_gap)
    kept, counts = filter_episodes(episodes, options.quality)
    writer = ImageWriter(load_frame, options.images_dir, name_of=options.pseudonyms.frame)
    for episode in kept:
        for action in episode.actions:
            if action.frame_id is not None:
                writer.image_for(action.frame_id)
    pieces = None
    if options.describer is None:  # a describer rewrites instructions later, on the driver
        trajectories = [episode_to_trajectory(episode, writer.refs.get) for episode in kept]
        pieces = write_session_pieces(trajectories, options, piece_stem(session.session_id))
    return SessionOutput(kept, counts, writer.refs, writer.files, pieces)


def build_dataset(
    records: Iterable[Batch],
    frames: Callable[[str], Frame | None] | FrameSource,
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
    source: BuildSource | None = None,
) -> BuildSummary:
    """Reduce, scrub, split, filter and export every session in ``records`` into ``out_dir``.

    ``frames``: a frame loader (``spool.load_frame``: sessions are built in this process), or a
    ``FrameSource`` (sessions are built by a pool of ``workers`` processes, default one per usable
    core, each opening the source itself). Either way the output is the same, byte for byte.

    ``formats``: which exports to write (images, summary, viewer and report are always written).
    ``pseudonym_key``: the secret of the id pseudonyms; by default ../.OUT.pseudonym-key beside the
    dataset folder (so the folder can be shared without it), created if absent.
    ``extra_names``: user/host names to scrub besides this machine's (say, the contributors' accounts).
    ``describer``: an endpoint to write instructions for unmarked episodes; None keeps the built-in ones.
    ``progress``: told after each session and around each output (see ``dataset/progress.py``).
    ``source``: where ``records`` come from, for the manifest (OUT/manifest.json, see lineage.py) that
    ``demotrace datasets check`` compares with the source later.
    """
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
    sessions, without_header = collect_sessions(lineage.observe(records))
    # Every session's ids are names to scrub, with a header or not: the same list a build that reads the
    # store's metadata (``ray_stores``) makes, so both engines write the same bytes.
    seen = lineage.sessions()
    scrubber = dataset_scrubber([s for _, s in seen], (d for d, _ in seen), extra_names)
    count = len(sessions)
    pool_size = min(workers if workers is not None else usable_cores(), count)
    progress(BuildProgress("sessions", 0, count))
    if isinstance(frames, FrameSource) and pool_size > 1:
        mapped = map_sessions_in_pool(
            process_session, _handed_over(sessions), options, scrubber, frames, pool_size
        )
        outputs = _with_progress(mapped, count, progress)
        with frames.open() as raw_frames:  # the describer may send each episode's first frame
            summary = write_dataset(
                options,
                outputs,
                count,
                without_header,
                scrubber,
                resolving_loader(raw_frames),
                progress=progress,
            )
    else:
        with ExitStack() as stack:
            raw = stack.enter_context(frames.open()) if isinstance(frames, FrameSource) else frames
            whole_frames = resolving_loader(raw)  # delta frames come back as whole images
            built = (
                process_session(session, options, scrubber, whole_frames)
                for session in _handed_over(sessions)
            )
            outputs = _with_progress(built, count, progress)
            summary = write_dataset(
                options, outputs, count, without_header, scrubber, whole_frames, progress=progress
            )
    write_manifest(out_dir, lineage.manifest(source or BuildSource({"kind": "records"}), options.pseudonyms))
    return summary


def _with_progress(
    outputs: Iterable[SessionOutput], count: int, progress: ProgressCallback
) -> list[SessionOutput]:
    """The sessions' outputs in order, telling ``progress`` after each one."""
    collected: list[SessionOutput] = []
    steps = images = 0
    for done, output in enumerate(outputs, start=1):
        collected.append(output)
        steps += sum(len(episode.actions) for episode in output.episodes)
        images += len(output.image_files)
        progress(BuildProgress("sessions", done, count, steps, images))
    return collected


def _handed_over(sessions: list[SessionEvents]) -> Iterator[SessionEvents]:
    """The sessions in order, each dropped from the list as it is handed over: a session's events are
    not kept once its output is built (they were the larger part of a build's memory growth)."""
    sessions.reverse()
    while sessions:
        yield sessions.pop()
