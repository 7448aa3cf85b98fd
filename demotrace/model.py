"""The shared vocabulary: events the recorder captures, frames, spool/upload units and dataset actions.

Every type is a msgspec Struct so that it encodes to MessagePack (spool, wire) and JSON (human edges)
without hand-written (de)serialisers. Times: ``t`` is the recorder's monotonic clock in seconds (use it
for ordering and durations); ``wall`` is Unix time in seconds (use it for display and for episodes
that span recorder restarts).
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1

# Names of modifier keys as they appear in Key.modifiers and in hotkey actions (pyautogui names).
MODIFIERS = ("ctrl", "shift", "alt", "super")

ButtonName = Literal["left", "right", "middle"]


class Monitor(msgspec.Struct, frozen=True):
    left: int
    top: int
    width: int
    height: int


class SessionHeader(msgspec.Struct, tag="header", tag_field="type"):
    """First record of every recording session: what a consumer needs to interpret the events."""

    session_id: str
    device_id: str
    platform: str  # "x11", "win32", "darwin"
    screen_width: int
    screen_height: int
    monitors: list[Monitor]
    double_click_ms: int  # max interval between clicks of a multi-click
    double_click_px: int  # max distance between clicks of a multi-click
    t: float
    wall: float
    recorder_version: str = ""
    schema_version: int = SCHEMA_VERSION


class Key(msgspec.Struct, tag="key", tag_field="type"):
    """A key press (down=True) or release.

    ``key`` is the pyautogui-style name ("a", "enter", "ctrl", "f5"); ``keysym`` the platform key symbol
    (the X keysym on X11); ``char`` the character it types, if printable; ``modifiers`` the modifier keys
    held at the time, excluding this key itself.
    """

    t: float
    wall: float
    down: bool
    key: str
    keysym: int = 0
    char: str | None = None
    modifiers: list[str] = []


class Button(msgspec.Struct, tag="button", tag_field="type"):
    t: float
    wall: float
    down: bool
    button: ButtonName
    x: int
    y: int


class Scroll(msgspec.Struct, tag="scroll", tag_field="type"):
    """One scroll tick batch at a position: dy > 0 scrolls up (away from the user), dx > 0 right."""

    t: float
    wall: float
    x: int
    y: int
    dx: int
    dy: int


class MovePath(msgspec.Struct, tag="move", tag_field="type"):
    """A stretch of pointer movement, simplified: points are (x, y, seconds since ``t``)."""

    t: float
    wall: float
    points: list[tuple[int, int, float]]


class Window(msgspec.Struct, tag="window", tag_field="type"):
    """The focused (or, without a window manager, pointed-at) top-level window changed, or its title did."""

    t: float
    wall: float
    app: str  # WM_CLASS class part, e.g. "XTerm"
    title: str
    pid: int | None
    x: int
    y: int
    width: int
    height: int
    window_id: int = 0
    url: str | None = None  # a browser window's page (origin and path), where the policy allows it


class PageElement(msgspec.Struct, frozen=True):
    """An element of a browser page, as the browser extension describes it: its role (ARIA, explicit
    or implied by the tag), accessible name, input type and autocomplete hint, and its box on the
    screen in pixels (width 0: unknown). Never its value."""

    role: str
    name: str = ""
    input_type: str = ""
    autocomplete: str = ""
    left: int = 0
    top: int = 0
    width: int = 0
    height: int = 0


class Element(msgspec.Struct, tag="element", tag_field="type"):
    """A click (``event="click"``, at screen point ``x, y``) or a focus change (``"focus"``) landed on
    ``element`` in the focused browser page; ``t`` is when the browser's report arrived."""

    t: float
    wall: float
    event: Literal["click", "focus"]
    element: PageElement
    x: int | None = None
    y: int | None = None


class FrameTaken(msgspec.Struct, tag="frame", tag_field="type"):
    """A screenshot was grabbed at the start of an action; the pixels live in a separate Frame record.

    ``t`` is the time of the input event that triggered the grab (so the frame sorts before the action
    it precedes); ``grabbed_t`` is when the grab actually happened.
    """

    t: float
    wall: float
    frame_id: str
    left: int
    top: int
    width: int
    height: int
    trigger: str  # "click", "key", "scroll", "hotkey", "start", "window"
    grabbed_t: float = 0.0


class Marker(msgspec.Struct, tag="marker", tag_field="type"):
    """Something that is not input: a task start/end, a span that was not captured, a pause."""

    t: float
    wall: float
    kind: str  # "task_start", "task_end", "not_captured", "paused", "resumed", "stop"
    text: str = ""
    duration: float = 0.0


Event = Key | Button | Scroll | MovePath | Window | Element | FrameTaken | Marker


class Batch(msgspec.Struct, tag="batch", tag_field="type"):
    """A group of events committed to the spool at once, and the unit of upload (idempotent by batch_id)."""

    batch_id: str
    session_id: str
    device_id: str
    seq: int  # 0, 1, 2 ... within the session
    events: list[Event]
    header: SessionHeader | None = None  # set on the session's first batch


class Frame(msgspec.Struct, tag="frame_image", tag_field="type"):
    """The pixels of one FrameTaken, encoded (media_type such as "image/webp" or "image/png").

    A delta frame (media_type "application/x-demotrace-delta", see frames.delta) holds only what changed
    since ``base_frame_id``; ``frames.resolver.resolving_loader`` rebuilds it as a full image.
    """

    frame_id: str
    session_id: str
    device_id: str
    t: float
    wall: float
    left: int
    top: int
    width: int
    height: int
    media_type: str
    data: bytes
    base_frame_id: str | None = None


Record = Batch | Frame

ActionKind = Literal[
    "click",
    "double_click",
    "triple_click",
    "right_click",
    "middle_click",
    "drag",
    "scroll",
    "type",
    "press",
    "hotkey",
]


class Action(msgspec.Struct):
    """One step a computer-use agent would take, reduced from raw events.

    Coordinates are in screen pixels. ``x, y`` is where the action happened (press point of a drag);
    ``end_x, end_y`` is where a drag was released. ``text`` holds typed text; ``keys`` the keys of a
    press or hotkey (modifiers first); ``dx, dy`` the scroll ticks. ``path`` is the cursor path that led
    up to the action, as (x, y, seconds since ``t``; negative: before it).
    """

    kind: ActionKind
    t: float
    t_end: float
    wall: float
    x: int | None = None
    y: int | None = None
    end_x: int | None = None
    end_y: int | None = None
    text: str | None = None
    keys: list[str] | None = None
    dx: int = 0
    dy: int = 0
    path: list[tuple[int, int, float]] = []
    window: Window | None = None
    frame_id: str | None = None
    element: PageElement | None = None  # what it landed on, when a browser page said so


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)


def encode_record(record: Record) -> bytes:
    return _record_encoder.encode(record)


def decode_record(data: bytes | bytearray | memoryview) -> Record:
    """Decode one MessagePack record; raises msgspec.ValidationError / DecodeError on bad input."""
    record: Record = _record_decoder.decode(data)
    return record
