"""Batches + frames → a dataset folder (the I/O edge around the pure transforms).

OUT/trajectories.jsonl   one episode per line (AgentNet style, see export/agentnet.py)
OUT/images/              each step's pre-action frame, once per frame id, in its stored encoding
OUT/summary.json         counts and sizes
OUT/index.html           a viewer to check the result by eye
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from demotrace.dataset.episodes import DEFAULT_IDLE_GAP_S, split_episodes
from demotrace.dataset.export.agentnet import ImageRef, ImageRegion, Trajectory, episode_to_trajectory
from demotrace.dataset.export.viewer import render_viewer
from demotrace.dataset.reduce import reduce_events
from demotrace.model import Batch, Event, Frame, SessionHeader

TRAJECTORIES_FILE = "trajectories.jsonl"
IMAGES_DIR = "images"
SUMMARY_FILE = "summary.json"
VIEWER_FILE = "index.html"

_EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpeg", "image/jpg": "jpeg"}
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class BuildSummary(msgspec.Struct):
    sessions: int
    sessions_without_header: int  # skipped: without the header, screen size and timing are unknown
    episodes: int
    steps: int
    actions_by_kind: dict[str, int]
    frames_written: int
    steps_without_frame: int
    image_bytes: int
    jsonl_bytes: int
    total_bytes: int  # images + JSONL + viewer
    # Paths as text so the summary encodes as it is (msgspec does not encode Path).
    out_dir: str
    trajectories_path: str
    images_dir: str
    summary_path: str
    viewer_path: str


@dataclass(frozen=True)
class SessionEvents:
    session_id: str
    header: SessionHeader
    events: list[Event]


def collect_sessions(records: Iterable[Batch]) -> tuple[list[SessionEvents], int]:
    """Group batches into sessions (one copy per batch_id, in seq order, events sorted by t).

    Returns the sessions, ordered by start time, and how many sessions had no header.
    """
    batches_by_session: dict[str, dict[str, Batch]] = {}
    for batch in records:
        # An upload may be retried: the same batch_id twice carries the same events.
        batches_by_session.setdefault(batch.session_id, {}).setdefault(batch.batch_id, batch)
    sessions: list[SessionEvents] = []
    without_header = 0
    for session_id, by_id in batches_by_session.items():
        batches = sorted(by_id.values(), key=lambda batch: batch.seq)
        header = next((batch.header for batch in batches if batch.header is not None), None)
        if header is None:
            without_header += 1
            continue
        events = [event for batch in batches for event in batch.events]
        events.sort(key=lambda event: event.t)  # stable: equal times keep their recorded order
        sessions.append(SessionEvents(session_id, header, events))
    sessions.sort(key=lambda session: (session.header.wall, session.session_id))
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
    """Writes each frame once and remembers where, so steps sharing a frame share a file."""

    def __init__(self, load_frame: Callable[[str], Frame | None], images_dir: Path) -> None:
        self._load_frame = load_frame
        self._images_dir = images_dir
        self._written: dict[str, ImageRef | None] = {}
        self.frames_written = 0
        self.image_bytes = 0

    def image_for(self, frame_id: str) -> ImageRef | None:
        if frame_id not in self._written:
            self._written[frame_id] = self._write(frame_id)
        return self._written[frame_id]

    def _write(self, frame_id: str) -> ImageRef | None:
        frame = self._load_frame(frame_id)
        if frame is None:
            return None
        name = f"{image_stem(frame_id)}.{image_extension(frame.media_type)}"
        (self._images_dir / name).write_bytes(frame.data)
        self.frames_written += 1
        self.image_bytes += len(frame.data)
        region = ImageRegion(left=frame.left, top=frame.top, width=frame.width, height=frame.height)
        return ImageRef(path=f"{IMAGES_DIR}/{name}", region=region)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _jsonl(trajectories: Sequence[Trajectory]) -> bytes:
    encoder = msgspec.json.Encoder()
    return b"".join(encoder.encode(trajectory) + b"\n" for trajectory in trajectories)


def build_dataset(
    records: Iterable[Batch],
    load_frame: Callable[[str], Frame | None],
    out_dir: Path,
    idle_gap: float = DEFAULT_IDLE_GAP_S,
) -> BuildSummary:
    """Reduce, split and export every session in ``records`` into ``out_dir``."""
    images_dir = out_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    writer = _ImageWriter(load_frame, images_dir)
    sessions, without_header = collect_sessions(records)

    trajectories: list[Trajectory] = []
    for session in sessions:
        actions = reduce_events(session.header, session.events)
        for episode in split_episodes(session.session_id, session.header, session.events, actions, idle_gap):
            trajectories.append(episode_to_trajectory(episode, writer.image_for))

    steps = [step for trajectory in trajectories for step in trajectory.traj]
    jsonl = _jsonl(trajectories)
    viewer = render_viewer(trajectories).encode()
    trajectories_path = out_dir / TRAJECTORIES_FILE
    viewer_path = out_dir / VIEWER_FILE
    _write_atomically(trajectories_path, jsonl)
    _write_atomically(viewer_path, viewer)

    summary = BuildSummary(
        sessions=len(sessions),
        sessions_without_header=without_header,
        episodes=len(trajectories),
        steps=len(steps),
        actions_by_kind=dict(sorted(Counter(step.value.action for step in steps).items())),
        frames_written=writer.frames_written,
        steps_without_frame=sum(1 for step in steps if step.image is None),
        image_bytes=writer.image_bytes,
        jsonl_bytes=len(jsonl),
        total_bytes=writer.image_bytes + len(jsonl) + len(viewer),
        out_dir=str(out_dir),
        trajectories_path=str(trajectories_path),
        images_dir=str(images_dir),
        summary_path=str(out_dir / SUMMARY_FILE),
        viewer_path=str(viewer_path),
    )
    _write_atomically(out_dir / SUMMARY_FILE, summary_json(summary))
    return summary


def summary_json(summary: BuildSummary) -> bytes:
    """The figures of a build, with paths relative to the dataset folder so the folder can move."""
    figures = msgspec.structs.asdict(summary)
    for key in ("out_dir", "trajectories_path", "images_dir", "summary_path", "viewer_path"):
        figures[key] = os.path.relpath(figures[key], summary.out_dir)
    return msgspec.json.format(msgspec.json.encode(figures), indent=2) + b"\n"
