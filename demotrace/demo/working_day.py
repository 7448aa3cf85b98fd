"""A working day of recording as records, made up in seconds: the load of the fault-injection and soak
benches (bench/fault_outage.py, bench/soak.py) and their tests.

Sizes follow the frame budget (bench/frames.py: ~10 MB per active hour): a tile delta per action
against the frame before, a whole key frame every 60, random bytes (frames are already compressed).
Events: a pointer path, the frame marker and a few keys per action.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from demotrace.model import Batch, Event, Frame, FrameTaken, Key, MovePath, Record, SessionHeader
from demotrace.protocol import DELTA_MEDIA_TYPE


@dataclass(frozen=True)
class WorkingDay:
    """What a day of recording writes. Sizes follow the frame budget (bench/frames.py: ~10 MB per
    active hour): a tile delta per action against the frame before, a whole key frame every 60."""

    hours: float = 8.0
    actions_per_hour: int = 600
    batch_seconds: float = 1.0  # the recorder writes a batch each second while there is input
    delta_bytes: tuple[int, int] = (2_000, 30_000)
    key_frame_bytes: tuple[int, int] = (100_000, 250_000)
    key_frame_every: int = 60
    keys_per_action: int = 6

    @property
    def actions(self) -> int:
        return int(self.hours * self.actions_per_hour)


def _action_events(t: float, wall: float, frame_id: str, rng: random.Random, keys: int) -> list[Event]:
    path = [(rng.randrange(1920), rng.randrange(1080), step / 60) for step in range(12)]
    events: list[Event] = [
        FrameTaken(t=t, wall=wall, frame_id=frame_id, left=0, top=0, width=1920, height=1080, trigger="key"),
        MovePath(t=t - 0.4, wall=wall - 0.4, points=path),
    ]
    for index in range(keys):
        char = rng.choice("abcdefghijklmnopqrstuvwxyz ")
        for down in (True, False):
            events.append(Key(t=t + index * 0.12 + 0.05 * (not down), wall=wall + index * 0.12, down=down,
                              key="space" if char == " " else char, keysym=ord(char), char=char))  # fmt: skip
    return events


def working_day(day: WorkingDay, seed: int, device_id: str = "laptop") -> Iterator[Record]:
    """The records of one recording session lasting ``day``, in the order the recorder commits them."""
    rng = random.Random(seed)
    session_id = uuid.uuid4().hex
    start_wall = 1.7e9
    gap = 3600.0 / day.actions_per_hour
    header = SessionHeader(session_id, device_id, "x11", 1920, 1080, [], 400, 4, 0.0, start_wall)
    pending: list[Event] = []
    batch_started = 0.0
    seq = 0
    previous_frame: str | None = None
    for index in range(day.actions):
        t = index * gap + rng.uniform(0, gap / 2)
        frame_id = uuid.uuid4().hex
        key_frame = index % day.key_frame_every == 0
        size = rng.randint(*(day.key_frame_bytes if key_frame else day.delta_bytes))
        yield Frame(frame_id, session_id, device_id, t, start_wall + t, 0, 0, 1920, 1080,
                    "image/png" if key_frame else DELTA_MEDIA_TYPE, os.urandom(size),
                    None if key_frame else previous_frame)  # fmt: skip
        previous_frame = frame_id
        pending += _action_events(t, start_wall + t, frame_id, rng, day.keys_per_action)
        if t - batch_started >= day.batch_seconds or index == day.actions - 1:
            yield Batch(uuid.uuid4().hex, session_id, device_id, seq, pending, header if seq == 0 else None)
            seq += 1
            pending, batch_started = [], t
