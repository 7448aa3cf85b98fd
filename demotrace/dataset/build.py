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
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import msgspec

from demotrace.dataset.describe import ChatDescriber, DescriberConfig
from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S, Episode, split_episodes
from demotrace.dataset.export.adp import ADP_DIR, ADP_FILE, adp_jsonl
from demotrace.dataset.export.agentnet import (
    ImageRef,
    ImageRegion,
    ScreenSize,
    Trajectory,
    episode_to_trajectory,
)
from demotrace.dataset.export.parquet import PARQUET_DIR, write_parquet_shards
from demotrace.dataset.export.steps import step_records
from demotrace.dataset.export.viewer import render_viewer
from demotrace.dataset.export.wds import WEBDATASET_DIR, write_webdataset_shards
from demotrace.dataset.privacy import (
    KnownNames,
    Pseudonyms,
    Scrubber,
    TextScrubber,
    default_key_path,
    load_or_create_key,
    local_names,
    pseudonymous_header,
    scrub_actions,
    scrub_markers,
)
from demotrace.dataset.quality import DROP_REASONS, QualityConfig, QualityCounts, filter_episodes
from demotrace.dataset.reduce import reduce_events
from demotrace.dataset.report import REPORT_FILE, ReportFigures, count_redactions, render_report, steps_by_app
from demotrace.frames.resolver import resolving_loader
from demotrace.model import Batch, Event, Frame, SessionHeader

TRAJECTORIES_FILE = "trajectories.jsonl"
IMAGES_DIR = "images"
SUMMARY_FILE = "summary.json"
VIEWER_FILE = "index.html"

ExportFormat = Literal["agentnet", "parquet", "webdataset", "adp"]
ALL_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)

_EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpeg", "image/jpg": "jpeg"}
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Summary fields holding paths: absolute in the returned value, relative to the folder in summary.json.
_PATH_FIELDS = (
    "out_dir",
    "trajectories_path",
    "images_dir",
    "summary_path",
    "viewer_path",
    "report_path",
    "parquet_dir",
    "webdataset_dir",
    "adp_path",
    "pseudonym_key_path",
)


class ShardLimits(msgspec.Struct, frozen=True, kw_only=True):
    """When the Parquet and WebDataset writers start a new shard: whichever limit is reached first."""

    max_steps: int = 5000
    max_bytes: int = 256 * 1024 * 1024


class BuildSummary(msgspec.Struct):
    sessions: int
    sessions_without_header: int  # skipped: without the header, screen size and timing are unknown
    episodes: int  # kept ones (after the quality filter)
    steps: int
    actions_by_kind: dict[str, int]
    frames_written: int
    steps_without_frame: int
    image_bytes: int
    jsonl_bytes: int
    total_bytes: int  # images + JSONL + viewer (every output, per file kind: bytes_by_output)
    # Paths as text so the summary encodes as it is (msgspec does not encode Path); "" when not written.
    out_dir: str
    trajectories_path: str
    images_dir: str
    summary_path: str
    viewer_path: str
    report_path: str = ""
    parquet_dir: str = ""
    webdataset_dir: str = ""
    adp_path: str = ""
    pseudonym_key_path: str = ""
    formats: list[str] = []
    episodes_dropped: dict[str, int] = {}  # by quality reason
    instructions_by_source: dict[str, int] = {}
    describer_failures: int = 0  # episodes whose model description failed (deterministic one kept)
    redactions_by_kind: dict[str, int] = {}
    bytes_by_output: dict[str, int] = {}
    parquet_shards: int = 0
    webdataset_shards: int = 0


@dataclass(frozen=True)
class SessionEvents:
    session_id: str
    header: SessionHeader
    events: list[Event]


def session_events(session_id: str, batches: Iterable[Batch]) -> SessionEvents | None:
    """One session from its batches in arrival order (one copy per batch_id, in seq order, events
    sorted by t); None without a header."""
    by_id: dict[str, Batch] = {}
    for batch in batches:
        # An upload may be retried: the same batch_id twice carries the same events.
        by_id.setdefault(batch.batch_id, batch)
    ordered = sorted(by_id.values(), key=lambda batch: batch.seq)
    header = next((batch.header for batch in ordered if batch.header is not None), None)
    if header is None:
        return None
    events = [event for batch in ordered for event in batch.events]
    events.sort(key=lambda event: event.t)  # stable: equal times keep their recorded order
    return SessionEvents(session_id, header, events)


def session_order(start_wall: float, session_id: str) -> tuple[float, str]:
    """Where a session goes in a dataset: by start time, then id (every engine writes this order)."""
    return (start_wall, session_id)


def collect_sessions(records: Iterable[Batch]) -> tuple[list[SessionEvents], int]:
    """Group batches into sessions (see ``session_events``).

    Returns the sessions, ordered by start time, and how many sessions had no header.
    """
    batches_by_session: dict[str, dict[str, Batch]] = {}
    for batch in records:
        batches_by_session.setdefault(batch.session_id, {}).setdefault(batch.batch_id, batch)
    sessions: list[SessionEvents] = []
    without_header = 0
    for session_id, by_id in batches_by_session.items():
        session = session_events(session_id, by_id.values())
        if session is None:
            without_header += 1
        else:
            sessions.append(session)
    sessions.sort(key=lambda session: session_order(session.header.wall, session.session_id))
    return sessions, without_header


def image_extension(media_type: str) -> str:
    known = _EXTENSIONS.get(media_type.lower())
    if known is not None:
        return known
    subtype = media_type.rpartition("/")[2].lower()
    return subtype if subtype.isalnum() else "bin"


def image_stem(frame_id: str) -> str:
    """A file name for a frame id that cannot escape the images folder."""
    if _SAFE_ID.fullmatch(frame_id):
        return frame_id
    return "f-" + hashlib.sha256(frame_id.encode()).hexdigest()[:32]


class _ImageWriter:
    """Writes each frame once and remembers where, so steps sharing a frame share a file.

    ``name_of(frame_id)`` gives the file's stem (a pseudonym in a build: frame ids are store keys)."""

    def __init__(
        self,
        load_frame: Callable[[str], Frame | None],
        images_dir: Path,
        name_of: Callable[[str], str] = image_stem,
    ) -> None:
        self._load_frame = load_frame
        self._images_dir = images_dir
        self._name_of = name_of
        self.refs: dict[str, ImageRef | None] = {}  # by frame id; None: the frame could not be loaded
        self.files: dict[str, int] = {}  # file name → bytes

    def image_for(self, frame_id: str) -> ImageRef | None:
        if frame_id not in self.refs:
            self.refs[frame_id] = self._write(frame_id)
        return self.refs[frame_id]

    def _write(self, frame_id: str) -> ImageRef | None:
        frame = self._load_frame(frame_id)
        if frame is None:
            return None
        name = f"{image_stem(self._name_of(frame_id))}.{image_extension(frame.media_type)}"
        (self._images_dir / name).write_bytes(frame.data)
        self.files[name] = len(frame.data)
        region = ImageRegion(left=frame.left, top=frame.top, width=frame.width, height=frame.height)
        return ImageRef(path=f"{IMAGES_DIR}/{name}", region=region)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _jsonl(trajectories: Sequence[Trajectory]) -> bytes:
    encoder = msgspec.json.Encoder()
    return b"".join(encoder.encode(trajectory) + b"\n" for trajectory in trajectories)


def dataset_scrubber(
    session_ids: Sequence[str], device_ids: Iterable[str], extra_names: KnownNames | None
) -> Scrubber:
    """Names to scrub: this machine's user and host, the caller's, and every raw device and session id
    of the dataset (an id typed or shown in a title would undo its pseudonym)."""
    own_ids = KnownNames(device_ids=tuple(sorted(set(device_ids))), session_ids=tuple(session_ids))
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


def _first_frame(episode: Episode, load_frame: Callable[[str], Frame | None]) -> tuple[str, bytes] | None:
    frame_id = next((action.frame_id for action in episode.actions if action.frame_id is not None), None)
    frame = load_frame(frame_id) if frame_id is not None else None
    return (frame.media_type, frame.data) if frame is not None else None


def describe_episodes(
    episodes: Sequence[Episode],
    describer: ChatDescriber,
    scrubber: Scrubber,
    load_frame: Callable[[str], Frame | None],
) -> list[Episode]:
    """Episodes without a task marker get the model's instruction when it gives one (scrubbed like any
    text: a model may echo what it was shown); everything else is returned unchanged."""
    described = []
    for episode in episodes:
        if episode.instruction_source == "generated":
            screen = ScreenSize(width=episode.header.screen_width, height=episode.header.screen_height)
            image = _first_frame(episode, load_frame) if describer.config.send_images else None
            instruction = describer.describe(episode.actions, screen, image)
            if instruction is not None:
                episode = msgspec.structs.replace(
                    episode, instruction=scrubber.text(instruction), instruction_source="described"
                )
        described.append(episode)
    return described


def _remove_unrequested(out_dir: Path, formats: Collection[ExportFormat]) -> None:
    """Our own outputs of formats not built this time: left there, they would pass for this build's."""
    if "agentnet" not in formats:
        (out_dir / TRAJECTORIES_FILE).unlink(missing_ok=True)
    if "adp" not in formats:
        (out_dir / ADP_DIR / ADP_FILE).unlink(missing_ok=True)
    if "parquet" not in formats:
        for shard in (out_dir / PARQUET_DIR).glob("train-*.parquet"):
            shard.unlink()
    if "webdataset" not in formats:
        for shard in (out_dir / WEBDATASET_DIR).glob("shard-*.tar"):
            shard.unlink()


@dataclass(frozen=True)
class BuildOptions:
    """The checked settings of one build; picklable, so a distributed engine can hand it to workers."""

    out_dir: Path
    formats: tuple[ExportFormat, ...]
    idle_gap: float
    quality: QualityConfig
    shard_limits: ShardLimits
    pseudonyms: Pseudonyms
    key_path: Path | None  # the key file read or created; None when the caller passed the key
    extra_names: KnownNames | None
    describer: DescriberConfig | None

    @property
    def images_dir(self) -> Path:
        return self.out_dir / IMAGES_DIR


def prepare_build(
    out_dir: Path,
    idle_gap: float = DEFAULT_IDLE_GAP_S,
    *,
    formats: Collection[ExportFormat] = ALL_FORMATS,
    quality: QualityConfig | None = None,
    pseudonym_key: bytes | None = None,
    extra_names: KnownNames | None = None,
    describer: DescriberConfig | None = None,
    shard_limits: ShardLimits | None = None,
) -> BuildOptions:
    """Check the settings, create the images folder and read (or create) the pseudonym key."""
    unknown = set(formats) - set(ALL_FORMATS)
    if unknown:
        raise ValueError(f"unknown dataset formats: {sorted(unknown)} (known: {list(ALL_FORMATS)})")
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    key_path: Path | None = None
    key = pseudonym_key
    if key is None:
        key_path = default_key_path(out_dir)
        key = load_or_create_key(key_path)
    return BuildOptions(
        out_dir=out_dir,
        formats=tuple(name for name in ALL_FORMATS if name in formats),
        idle_gap=idle_gap,
        quality=quality if quality is not None else QualityConfig(),
        shard_limits=shard_limits if shard_limits is not None else ShardLimits(),
        pseudonyms=Pseudonyms(key),
        key_path=key_path,
        extra_names=extra_names,
        describer=describer,
    )


@dataclass(frozen=True)
class SessionOutput:
    """What one session contributes to a dataset; merged in session order by ``write_dataset``."""

    episodes: list[Episode]  # kept ones, scrubbed and pseudonymous (frame ids still raw)
    quality: QualityCounts
    images: dict[str, ImageRef | None]  # raw frame id → where its frame was written (None: not found)
    image_files: dict[str, int]  # file name in images/ → bytes


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
    writer = _ImageWriter(load_frame, options.images_dir, name_of=options.pseudonyms.frame)
    for episode in kept:
        for action in episode.actions:
            if action.frame_id is not None:
                writer.image_for(action.frame_id)
    return SessionOutput(kept, counts, writer.refs, writer.files)


def _merged_quality(counts: Iterable[QualityCounts]) -> QualityCounts:
    kept = 0
    dropped: Counter[str] = Counter()
    for count in counts:
        kept += count.kept
        dropped.update(count.dropped)
    return QualityCounts(kept=kept, dropped={reason: dropped[reason] for reason in DROP_REASONS})


def build_dataset(
    records: Iterable[Batch],
    load_frame: Callable[[str], Frame | None],
    out_dir: Path,
    idle_gap: float = DEFAULT_IDLE_GAP_S,
    *,
    formats: Collection[ExportFormat] = ALL_FORMATS,
    quality: QualityConfig | None = None,
    pseudonym_key: bytes | None = None,
    extra_names: KnownNames | None = None,
    describer: DescriberConfig | None = None,
    shard_limits: ShardLimits | None = None,
) -> BuildSummary:
    """Reduce, scrub, split, filter and export every session in ``records`` into ``out_dir``.

    ``formats``: which exports to write (images, summary, viewer and report are always written).
    ``pseudonym_key``: the secret of the id pseudonyms; by default ../.OUT.pseudonym-key beside the
    dataset folder (so the folder can be shared without it), created if absent.
    ``extra_names``: user/host names to scrub besides this machine's (say, the contributors' accounts).
    ``describer``: an endpoint to write instructions for unmarked episodes; None keeps the built-in ones.
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
    sessions, without_header = collect_sessions(records)
    scrubber = dataset_scrubber(
        [session.session_id for session in sessions],
        (session.header.device_id for session in sessions),
        extra_names,
    )
    whole_frames = resolving_loader(load_frame)  # delta frames come back as whole images
    outputs = [process_session(session, options, scrubber, whole_frames) for session in sessions]
    return write_dataset(options, outputs, len(sessions), without_header, scrubber, whole_frames)


def write_dataset(
    options: BuildOptions,
    outputs: Sequence[SessionOutput],
    sessions: int,
    sessions_without_header: int,
    scrubber: Scrubber,
    load_frame: Callable[[str], Frame | None],
) -> BuildSummary:
    """Describe (if asked), turn the sessions' episodes, in the order given, into trajectories and write
    every export, the viewer, the report and the summary."""
    out_dir, formats, shard_limits = options.out_dir, options.formats, options.shard_limits
    images_dir = options.images_dir
    kept = [episode for output in outputs for episode in output.episodes]
    quality_counts = _merged_quality(output.quality for output in outputs)
    images: dict[str, ImageRef | None] = {}
    image_files: dict[str, int] = {}  # a frame shared by two sessions is one file, counted once
    for output in outputs:
        images.update(output.images)
        image_files.update(output.image_files)
    frames_written = len(image_files)
    image_bytes = sum(image_files.values())

    describer_failures = 0
    if options.describer is not None:
        with ChatDescriber(options.describer) as chat:
            kept = describe_episodes(kept, chat, scrubber, load_frame)
            describer_failures = chat.failures
    trajectories = [episode_to_trajectory(episode, images.get) for episode in kept]

    _remove_unrequested(out_dir, formats)
    bytes_by_output: dict[str, int] = {}
    trajectories_path = out_dir / TRAJECTORIES_FILE
    jsonl = b""
    if "agentnet" in formats:
        jsonl = _jsonl(trajectories)
        _write_atomically(trajectories_path, jsonl)
        bytes_by_output["trajectories.jsonl"] = len(jsonl)
    adp_path = out_dir / ADP_DIR / ADP_FILE
    if "adp" in formats:
        adp = adp_jsonl(trajectories)
        _write_atomically(adp_path, adp)
        bytes_by_output["adp"] = len(adp)

    def read_image(relative: str) -> bytes | None:
        path = out_dir / relative
        return path.read_bytes() if path.is_file() else None

    parquet_shards: list[Path] = []
    if "parquet" in formats:
        parquet_shards = write_parquet_shards(
            step_records(trajectories),
            read_image,
            out_dir / PARQUET_DIR,
            max_rows=shard_limits.max_steps,
            max_bytes=shard_limits.max_bytes,
        )
        bytes_by_output["parquet"] = sum(shard.stat().st_size for shard in parquet_shards)
    webdataset_shards: list[Path] = []
    if "webdataset" in formats:
        webdataset_shards = write_webdataset_shards(
            step_records(trajectories),
            read_image,
            out_dir / WEBDATASET_DIR,
            max_samples=shard_limits.max_steps,
            max_bytes=shard_limits.max_bytes,
        )
        bytes_by_output["webdataset"] = sum(shard.stat().st_size for shard in webdataset_shards)

    viewer = render_viewer(trajectories).encode()
    viewer_path = out_dir / VIEWER_FILE
    _write_atomically(viewer_path, viewer)
    bytes_by_output["images"] = image_bytes
    bytes_by_output["index.html"] = len(viewer)

    steps = [step for trajectory in trajectories for step in trajectory.traj]
    actions_by_kind: dict[str, int] = dict(sorted(Counter(step.value.action for step in steps).items()))
    instructions_by_source: dict[str, int] = dict(
        sorted(Counter(t.instruction_source for t in trajectories).items())
    )
    redactions = count_redactions(trajectories)
    steps_without_frame = sum(1 for step in steps if step.image is None)
    report = render_report(
        ReportFigures(
            episodes=len(trajectories),
            steps=len(steps),
            actions_by_kind=actions_by_kind,
            episode_lengths=[len(trajectory.traj) for trajectory in trajectories],
            steps_by_app=steps_by_app(trajectories),
            redactions_by_kind=redactions,
            quality={"kept": quality_counts.kept, **quality_counts.dropped},
            instructions_by_source=instructions_by_source,
            frames_written=frames_written,
            steps_without_frame=steps_without_frame,
            bytes_by_output=dict(sorted(bytes_by_output.items())),
        )
    ).encode()
    report_path = out_dir / REPORT_FILE
    _write_atomically(report_path, report)

    summary = BuildSummary(
        sessions=sessions,
        sessions_without_header=sessions_without_header,
        episodes=len(trajectories),
        steps=len(steps),
        actions_by_kind=actions_by_kind,
        frames_written=frames_written,
        steps_without_frame=steps_without_frame,
        image_bytes=image_bytes,
        jsonl_bytes=len(jsonl),
        total_bytes=image_bytes + len(jsonl) + len(viewer),
        out_dir=str(out_dir),
        trajectories_path=str(trajectories_path) if "agentnet" in formats else "",
        images_dir=str(images_dir),
        summary_path=str(out_dir / SUMMARY_FILE),
        viewer_path=str(viewer_path),
        report_path=str(report_path),
        parquet_dir=str(out_dir / PARQUET_DIR) if "parquet" in formats else "",
        webdataset_dir=str(out_dir / WEBDATASET_DIR) if "webdataset" in formats else "",
        adp_path=str(adp_path) if "adp" in formats else "",
        pseudonym_key_path=str(options.key_path) if options.key_path is not None else "",
        formats=[name for name in ALL_FORMATS if name in formats],
        episodes_dropped={reason: quality_counts.dropped[reason] for reason in DROP_REASONS},
        instructions_by_source=instructions_by_source,
        describer_failures=describer_failures,
        redactions_by_kind=redactions,
        bytes_by_output=dict(sorted({**bytes_by_output, "report.html": len(report)}.items())),
        parquet_shards=len(parquet_shards),
        webdataset_shards=len(webdataset_shards),
    )
    _write_atomically(out_dir / SUMMARY_FILE, summary_json(summary))
    return summary


def summary_json(summary: BuildSummary) -> bytes:
    """The figures of a build, with paths relative to the dataset folder so the folder can move."""
    figures = msgspec.structs.asdict(summary)
    for key in _PATH_FIELDS:
        if figures[key]:
            figures[key] = os.path.relpath(figures[key], summary.out_dir)
    return msgspec.json.format(msgspec.json.encode(figures), indent=2) + b"\n"
