"""Records a person's session is made of, with real images: a screenshot whose redactions are painted
black as the device paints them, and a batch of clicks and typing that reduces to actions."""

from __future__ import annotations

import io

import msgspec
from PIL import Image, ImageDraw
from test_collector import make_batch

from demotrace.geometry import Box
from demotrace.model import Batch, Button, Frame, FrameTaken, Key, Record

# Where the fake screenshot's redaction is painted (left, top, right, bottom).
REDACTED = Box(40, 30, 200, 70)


def screenshot_png(width: int = 320, height: int = 200, redacted: Box | None = REDACTED) -> bytes:
    image = Image.new("RGB", (width, height), (235, 238, 242))
    draw = ImageDraw.Draw(image)
    draw.text((10, 100), "Quarterly report", fill=(0, 0, 0))  # black text is not a redaction
    draw.rectangle((220, 120, 300, 180), fill=(30, 90, 200))
    if redacted is not None:
        draw.rectangle((redacted.left, redacted.top, redacted.right - 1, redacted.bottom - 1), fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def screenshot_frame(session_id: str, index: int) -> Frame:
    return Frame(
        frame_id=f"{session_id}-f{index}",
        session_id=session_id,
        device_id="claimed-by-client",
        t=100.1 + index,
        wall=1_700_000_100.1 + index,
        left=0,
        top=0,
        width=320,
        height=200,
        media_type="image/png",
        data=screenshot_png(),
    )


def working_batch(session_id: str) -> Batch:
    """A first batch: a click with its frame, then the word "hello" typed."""
    batch = make_batch(session_id, 0)
    wall = 1_700_000_100.0
    events = [
        msgspec.structs.replace(batch.events[0], wall=wall),
        FrameTaken(
            t=100.1,
            wall=wall,
            frame_id=f"{session_id}-f0",
            left=0,
            top=0,
            width=320,
            height=200,
            trigger="click",
        ),
        Button(t=100.2, wall=wall + 0.2, down=True, button="left", x=50, y=40),
        Button(t=100.25, wall=wall + 0.25, down=False, button="left", x=50, y=40),
    ]
    for index, char in enumerate("hello"):
        t = 101.0 + index / 10
        events.append(Key(t=t, wall=wall + 1 + index / 10, down=True, key=char, char=char))
        events.append(Key(t=t + 0.02, wall=wall + 1 + index / 10, down=False, key=char, char=char))
    return msgspec.structs.replace(batch, events=events)


def session_records(session_id: str) -> list[Record]:
    return [working_batch(session_id), screenshot_frame(session_id, 0)]
