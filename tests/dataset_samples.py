"""Synthetic recorded sessions (batches + real PNG/WebP frames) for the dataset build tests."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from demotrace.model import (
    Batch,
    Button,
    Event,
    Frame,
    FrameTaken,
    Key,
    Marker,
    Monitor,
    Scroll,
    SessionHeader,
    Window,
)

WALL0 = 1_700_000_000.0
SCREEN_W, SCREEN_H = 1280, 800


def encoded_image(width: int, height: int, image_format: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=image_format)
    return buffer.getvalue()


@dataclass
class Recording:
    """Batches as the collector would hand them over, and the frames they refer to."""

    batches: list[Batch] = field(default_factory=list)
    frames: dict[str, Frame] = field(default_factory=dict)

    def load_frame(self, frame_id: str) -> Frame | None:
        return self.frames.get(frame_id)

    def add(self, other: Recording) -> Recording:
        return Recording(self.batches + other.batches, {**self.frames, **other.frames})


def header(session_id: str, device_id: str, start: float) -> SessionHeader:
    return SessionHeader(
        session_id=session_id,
        device_id=device_id,
        platform="x11",
        screen_width=SCREEN_W,
        screen_height=SCREEN_H,
        monitors=[Monitor(left=0, top=0, width=SCREEN_W, height=SCREEN_H)],
        double_click_ms=400,
        double_click_px=4,
        t=start,
        wall=WALL0 + start,
    )


def typed(t: float, text: str, gap: float = 0.1) -> list[Event]:
    events: list[Event] = []
    for index, char in enumerate(text):
        at = t + index * gap
        name = "space" if char == " " else char.lower()
        modifiers = ["shift"] if char.isupper() else []
        events += [
            Key(t=at, wall=WALL0 + at, down=True, key=name, char=char, modifiers=modifiers),
            Key(t=at + 0.03, wall=WALL0 + at + 0.03, down=False, key=name, char=char, modifiers=modifiers),
        ]
    return events


def click(t: float, x: int, y: int) -> list[Event]:
    return [
        Button(t=t, wall=WALL0 + t, down=True, button="left", x=x, y=y),
        Button(t=t + 0.05, wall=WALL0 + t + 0.05, down=False, button="left", x=x, y=y),
    ]


def recording(
    session_id: str,
    device_id: str,
    *,
    start: float = 0.0,
    app: str = "libreoffice-writer",
    title: str = "Report.odt - LibreOffice Writer",
    text: str = "Hello team",
    task: str | None = None,
    image_format: str = "PNG",
    image_size: tuple[int, int] = (64, 40),
    extra_events: Sequence[Event] = (),
) -> Recording:
    """One session: a click, a typed text, ctrl+s and a scroll, each after its own frame; optionally
    inside a marked task. Frame ids contain the session and device id, as a careless recorder's might."""
    t = start
    frame_ids = [f"{session_id}-{device_id}-frame-{n}" for n in range(4)]
    width, height = image_size

    def frame_taken(at: float, frame_id: str) -> FrameTaken:
        return FrameTaken(
            t=at, wall=WALL0 + at, frame_id=frame_id, left=0, top=0, width=width, height=height, trigger="key"
        )

    events: list[Event] = [
        Window(t=t, wall=WALL0 + t, app=app, title=title, pid=42, x=0, y=0, width=SCREEN_W, height=SCREEN_H)
    ]
    if task is not None:
        events.append(Marker(t=t + 0.5, wall=WALL0 + t + 0.5, kind="task_start", text=task))
    events += [frame_taken(t + 1.0, frame_ids[0]), *click(t + 1.0, 640, 400)]
    events += [frame_taken(t + 2.0, frame_ids[1]), *typed(t + 2.0, text)]
    at = t + 2.0 + 0.1 * len(text) + 3.0
    events += [
        frame_taken(at, frame_ids[2]),
        Key(t=at, wall=WALL0 + at, down=True, key="ctrl_l"),
        Key(t=at + 0.05, wall=WALL0 + at + 0.05, down=True, key="s", char="\x13", modifiers=["ctrl"]),
        Key(t=at + 0.1, wall=WALL0 + at + 0.1, down=False, key="s", char="\x13", modifiers=["ctrl"]),
        Key(t=at + 0.15, wall=WALL0 + at + 0.15, down=False, key="ctrl_l"),
        frame_taken(at + 1.0, frame_ids[3]),
        Scroll(t=at + 1.0, wall=WALL0 + at + 1.0, x=600, y=500, dx=0, dy=-3),
    ]
    if task is not None:
        events.append(Marker(t=at + 2.0, wall=WALL0 + at + 2.0, kind="task_end"))
    events += list(extra_events)
    events.sort(key=lambda event: event.t)
    half = len(events) // 2
    batches = [
        Batch(
            batch_id=f"{session_id}-b0",
            session_id=session_id,
            device_id=device_id,
            seq=0,
            events=events[:half],
            header=header(session_id, device_id, start),
        ),
        Batch(
            batch_id=f"{session_id}-b1",
            session_id=session_id,
            device_id=device_id,
            seq=1,
            events=events[half:],
        ),
    ]
    media_type = f"image/{image_format.lower()}"
    frames = {
        frame_id: Frame(
            frame_id=frame_id,
            session_id=session_id,
            device_id=device_id,
            t=start,
            wall=WALL0 + start,
            left=0,
            top=0,
            width=width,
            height=height,
            media_type=media_type,
            data=encoded_image(width, height, image_format, (index * 60, 100, 200)),
        )
        for index, frame_id in enumerate(frame_ids)
    }
    return Recording(batches, frames)
