"""The recorder's event queue: one frozen struct per kind of message, and the clock of their stamps.

Producers: the input callbacks (the hot path: stamp, ``put_nowait`` one plain tuple of a message's class
and fields, which the processing thread turns into the struct: :func:`built`), the focus watch, the
gate's listener, ``Recorder.mark``, the frame pipeline and the echo thread. The one consumer is the
processing thread, which dispatches on the type (``match``).

Stamps (``ns``) are ``time.perf_counter_ns()`` (CLOCK_MONOTONIC on Linux); :class:`Clock` turns one into
``t`` (seconds) and ``wall`` (derived from a wall-clock reading taken at start), so the two never disagree
about order.

``gc=False``: none of these structs can be part of a reference cycle, so the garbage collector need not
track the thousands a second that pointer motion makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from demotrace.capture.browser_pages import BrowserReport
from demotrace.capture.masked_echo import EchoReading
from demotrace.capture.platform import WindowInfo
from demotrace.model import FrameTaken
from demotrace.policy import CapturePolicy, DeviceState


@dataclass(frozen=True)
class Clock:
    """Converts perf_counter_ns stamps to (t, wall)."""

    start_ns: int
    start_wall: float

    def t(self, stamp_ns: int) -> float:
        return stamp_ns / 1e9

    def wall(self, stamp_ns: int) -> float:
        return self.start_wall + (stamp_ns - self.start_ns) / 1e9


class PointerMoved(msgspec.Struct, frozen=True, gc=False):
    ns: int
    x: int
    y: int


class ButtonChanged(msgspec.Struct, frozen=True, gc=False):
    ns: int
    x: int
    y: int
    button: Any  # pynput's Button; its ``name`` is what counts
    pressed: bool


class Scrolled(msgspec.Struct, frozen=True, gc=False):
    ns: int
    x: int
    y: int
    dx: int
    dy: int


class KeyChanged(msgspec.Struct, frozen=True, gc=False):
    ns: int
    key: Any  # pynput's Key or KeyCode, described on the processing thread
    down: bool


class FocusChanged(msgspec.Struct, frozen=True, gc=False):
    ns: int
    window: WindowInfo | None


class GateChanged(msgspec.Struct, frozen=True, gc=False):
    """The gate's policy and state as of ``ns``: events queued before it are decided under the old ones."""

    ns: int
    policy: CapturePolicy
    state: DeviceState


class TaskMarked(msgspec.Struct, frozen=True, gc=False):
    ns: int
    kind: str
    text: str


class EchoChecked(msgspec.Struct, frozen=True, gc=False):
    ns: int
    check_id: int
    reading: EchoReading


class BrowserReported(msgspec.Struct, frozen=True, gc=False):
    """The browser extension of process ``pid`` reported (``report``), or its host hung up (None)."""

    ns: int
    pid: int
    report: BrowserReport | None


class FrameDone(msgspec.Struct, frozen=True, gc=False):
    """A requested frame is written (``taken``) or not (None); every request gets one."""

    taken: FrameTaken | None


class Drain(msgspec.Struct, frozen=True, gc=False):
    """The listeners are stopped: write what is left and end."""


Message = (
    PointerMoved
    | ButtonChanged
    | Scrolled
    | KeyChanged
    | FocusChanged
    | GateChanged
    | TaskMarked
    | EchoChecked
    | BrowserReported
    | FrameDone
    | Drain
)


@dataclass(frozen=True, slots=True)
class EchoLook:
    """A request to the echo thread: grab ``area`` as it is before the typing (``typed`` None), or look
    at the echo of ``typed`` there, no earlier than ``not_before`` (perf_counter seconds)."""

    check_id: int
    area: dict[str, int]
    typed: str | None
    not_before: float = 0.0


InputTuple = tuple[Any, ...]
"""What an input callback queues: a message's class (PointerMoved, ButtonChanged, Scrolled, KeyChanged),
then its fields in order."""
Queued = Message | InputTuple


def built(queued: Queued) -> Message:
    """The struct for what an input callback queued as a tuple; any other message as it is.

    The callbacks are the hot path and run on a listener thread that wakes from sleep with cold caches:
    there a tuple cost 3.85 µs of thread CPU time at the median against 4.31 µs for a struct (thread_time
    around ``put_nowait``, 3,000 of each, interleaved, 0.5 ms sleeps between), so the struct is built on
    the processing thread instead.
    """
    if type(queued) is tuple:
        message: Message = queued[0](*queued[1:])
        return message
    return queued  # type: ignore[return-value]  # not a tuple: one of the Message structs
