"""Frames: when to grab the screen (a pure decision over input events), and how to grab and encode it.

A frame is grabbed at the *start* of each action, never on a timer: the first mouse-down of a click
(not the second down of a double click), the first key of a typing burst, the first tick of a scroll
burst, every hotkey, and once when recording starts.

Encoding is frames.encoder's: PNG key frames and lossless-WebP tile deltas, about 1.9 KB per action frame
on the demo session instead of ~50 KB; ``grab_pixels`` only grabs.

``choose_media_type`` is the old full-frame choice (PNG for flat screens, lossy WebP otherwise),
kept for tools that want one self-contained image per frame.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal

from demotrace.capture.shm_grab import shm_grab_into
from demotrace.frames.pixels import SCREEN_BYTES_PER_PIXEL, ScreenPixels, WritableBuffer
from demotrace.model import Monitor

FrameTrigger = Literal["click", "key", "scroll", "hotkey", "start"]
InputKind = Literal["button_down", "button_up", "key_down", "modifier_down", "scroll"]

# A key or scroll after this much quiet starts a new burst (and so a new frame).
BURST_GAP_SECONDS = 1.0
# A thumbnail with at most this many colours is "flat": PNG beats lossy WebP there.
FLAT_SCREEN_MAX_COLOURS = 1024
THUMBNAIL_REDUCTION = 4
WEBP_QUALITY = 75
# WebP effort 2 is within ~6 % of the default size at ~1/8 of its time.
WEBP_METHOD = 2
PNG_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class TriggerState:
    """What the trigger decision remembers between events."""

    last_action: Literal["none", "mouse", "key", "scroll"] = "none"
    last_key_t: float = -math.inf
    last_scroll_t: float = -math.inf
    last_click_t: float = -math.inf
    last_click_x: int = 0
    last_click_y: int = 0
    last_click_button: str = ""


def frame_trigger(
    state: TriggerState,
    kind: InputKind,
    t: float,
    *,
    x: int = 0,
    y: int = 0,
    button: str = "",
    hotkey: bool = False,
    double_click_seconds: float = 0.4,
    double_click_px: int = 5,
) -> tuple[FrameTrigger | None, TriggerState]:
    """Decide whether an input event starts an action that deserves a frame; returns (trigger, new state).

    Modifier presses neither trigger nor count as typing: shift+H starts its burst at H, and ctrl+s
    grabs once, at s (as a hotkey).
    """
    if kind == "modifier_down":
        return None, state
    if kind == "button_down":
        repeat = (
            button == state.last_click_button
            and t - state.last_click_t <= double_click_seconds
            and abs(x - state.last_click_x) <= double_click_px
            and abs(y - state.last_click_y) <= double_click_px
        )
        new_state = replace(
            state,
            last_action="mouse",
            last_click_t=t,
            last_click_x=x,
            last_click_y=y,
            last_click_button=button,
        )
        return (None if repeat else "click"), new_state
    if kind == "button_up":
        return None, replace(state, last_action="mouse")
    if kind == "key_down":
        new_state = replace(state, last_action="key", last_key_t=t)
        if hotkey:
            return "hotkey", new_state
        starts_burst = state.last_action != "key" or t - state.last_key_t > BURST_GAP_SECONDS
        return ("key" if starts_burst else None), new_state
    # scroll
    new_state = replace(state, last_action="scroll", last_scroll_t=t)
    starts_burst = state.last_action != "scroll" or t - state.last_scroll_t > BURST_GAP_SECONDS
    return ("scroll" if starts_burst else None), new_state


def monitor_at(monitors: list[Monitor], x: int, y: int) -> Monitor:
    """The monitor containing the point; the first (primary) one if the point is on none of them."""
    for monitor in monitors:
        if (
            monitor.left <= x < monitor.left + monitor.width
            and monitor.top <= y < monitor.top + monitor.height
        ):
            return monitor
    return monitors[0]


def choose_media_type(thumbnail_colours: int | None) -> Literal["image/png", "image/webp"]:
    """PNG for flat screens (few colours: smaller and exact), lossy WebP for everything else.

    ``thumbnail_colours`` is None when the thumbnail has more than FLAT_SCREEN_MAX_COLOURS colours.
    """
    if thumbnail_colours is not None and thumbnail_colours <= FLAT_SCREEN_MAX_COLOURS:
        return "image/png"
    return "image/webp"


# Frame buffers kept for reuse: a grab, one waiting for OCR, one in OCR and the encoder's delta base.
FRAME_BUFFERS = 4


@dataclass(eq=False)
class FrameBuffer:
    """One frame-sized mapping outside the heap. ``fd`` is the memfd behind it (None where memfd is
    unavailable): the X server can then write a grab straight into it (see ``shm_grab``). Once a pooled
    buffer is attached, ``segment`` is (the mss backend it is attached on, its MIT-SHM segment)."""

    view: memoryview
    fd: int | None
    pooled: bool
    segment: Any = None

    def close(self) -> None:
        """Close the memfd (the mapping goes when its last view does); for buffers that are not reused."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _map(size: int) -> tuple[memoryview, int | None]:
    try:
        fd = os.memfd_create("demotrace-frame", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return memoryview(mmap.mmap(-1, size)), None
    try:
        os.ftruncate(fd, size)
        return memoryview(mmap.mmap(fd, size)), fd
    except BaseException:
        os.close(fd)
        raise


class FrameBuffers:
    """Frame-sized buffers reused from grab to grab, mapped outside the heap; one pool per ``mss.MSS``.

    A frame's buffer lives from the grab thread to the encoder's chain (freed on another thread,
    seconds later). Allocated from the heap, other allocations landed in the holes such buffers left
    and the heap grew by a frame every minute or so (malloc statistics during bench/record.py: 60-85
    MB of heap for 26-51 MB in use); mapped afresh for every frame, each grab paid ~2,000 page faults
    (7 ms of CPU for 8 MB). Here at most ``limit`` mappings are made and reused for as long as recording
    lasts. A grab never waits: when all of them are in use (OCR fell behind in a burst of actions) it
    gets a one-off mapping, dropped as soon as its frame is encoded, so what stays resident is bounded
    by ``limit``. The mappings are memfds, for the X server to write grabs into. Thread-safe."""

    def __init__(self, limit: int = FRAME_BUFFERS) -> None:
        self.limit = limit
        self._free: list[FrameBuffer] = []
        self._lent: dict[int, FrameBuffer] = {}  # by id() of the view: held here, so the id is not reused
        self._pooled = 0
        self._closed = False
        self._lock = threading.Lock()
        self.made = 0  # mappings made so far, one-off ones included (for tests and benchmarks)

    def take(self, size: int) -> FrameBuffer:
        """A buffer of ``size`` bytes, to be given back (``give_back(buffer.view)``) when its pixels go."""
        with self._lock:
            buffer = next((free for free in self._free if len(free.view) == size), None)
            if buffer is not None:
                self._free.remove(buffer)
            else:
                self.made += 1
                pooled = self._pooled < self.limit and not self._closed
                self._pooled += pooled
        if buffer is None:
            buffer = FrameBuffer(*_map(size), pooled=pooled)
        with self._lock:
            self._lent[id(buffer.view)] = buffer
        return buffer

    def give_back(self, view: WritableBuffer) -> None:
        with self._lock:
            buffer = self._lent.pop(id(view), None)
            if buffer is None:
                return
            if buffer.pooled and not self._closed:
                self._free.append(buffer)
                return
        buffer.close()

    def clear(self) -> None:
        """Drop every buffer (recording stopped): their pixels do not linger in memory."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for buffer in free:
            buffer.close()


def grab_pixels(screen: Any, monitor: Monitor, buffers: FrameBuffers | None = None) -> ScreenPixels:
    """Grab one monitor with an ``mss.MSS`` (owned by the calling thread) as BGRX pixels: the grab's
    own buffer, or (with ``buffers``, a pool for this ``screen``) a reused one, given back to
    ``buffers`` when the pixels are dropped. Never a Pillow image: that would copy 8 MB at 1080p."""
    box = {"left": monitor.left, "top": monitor.top, "width": monitor.width, "height": monitor.height}
    if buffers is None:
        shot = screen.grab(box)
        return ScreenPixels(shot.raw, *shot.size)
    buffer = buffers.take(monitor.width * monitor.height * SCREEN_BYTES_PER_PIXEL)
    try:
        if not shm_grab_into(screen, box, buffer):
            shot = screen.grab(box)
            if shot.size != (monitor.width, monitor.height):  # scaled (HiDPI elsewhere): no reuse
                buffers.give_back(buffer.view)
                return ScreenPixels(shot.raw, *shot.size)
            buffer.view[:] = shot.raw
    except BaseException:
        buffers.give_back(buffer.view)
        raise
    return ScreenPixels(buffer.view, monitor.width, monitor.height, release=buffers.give_back)
