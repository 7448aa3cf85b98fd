"""The recorder: input hooks → event queue → processing thread → spool batches; frames on their own thread.

Threads, and what each one sleeps on (nothing wakes up while the user is idle):

- pynput keyboard and mouse listeners (X RECORD): the callbacks are the hot path. They read the
  clock, ``put_nowait`` a tuple on a SimpleQueue and time themselves; nothing else.
- processing: turns queued tuples into model events, keeps the pointer path, decides frames and
  commits batches. Waits on the queue with a timeout only while something is unflushed.
- frames: grabs and encodes the monitor under the pointer when asked; waits on its request queue.
- focus watch (window manager present): sleeps in select() on its own X connection.
- the caller's thread: ``run`` waits on the caller's stop event.

Times: ``t`` is ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux); ``wall`` is derived from it and a
wall-clock reading taken at start, so the two never disagree about order.

Uploading is not the recorder's business: pass ``on_started``/``on_stopping`` to start and stop an
uploader around the recording (it can sleep on ``spool.committed``).

Privacy, all on the processing thread and in memory, before anything is written:

- The gate (``CaptureGate``): every event is decided against the current window and the gate's policy
  and state (``policy.decide``). The gate's listener puts a wake-up on the event queue, so a change
  applies to the very next event; a pause's end is a deadline of the queue wait, not a loop. While
  nothing may be captured (paused, exempt, a denied or not-allowlisted window) no input, pointer path,
  frame or window event is written - not even the window's name: the focus change into such a window is
  simply not reported. When capture resumes (or at stop) one ``Marker(kind="not_captured",
  text=<reason>, duration=<seconds>)`` is written, stamped with the *start* of the span; a change of
  reason inside a span closes it and opens the next. Task markers set during a span are held and
  written after its marker, in order; while exempt they are dropped. With low battery in
  ``input_only`` mode input is written but no frames, after a ``Marker(kind="input_only")``.
- Frames: every window the policy does not allow is painted black in the grabbed pixels (``blackout``),
  respecting the stacking order, before the frame is encoded.
- Typed text: keys go through ``TypingBurstRedactor``, which holds a typing burst until it ends and
  releases it with sensitive spans replaced by ``Marker(kind="redacted", text="<KIND>")``. Batches hold
  back whatever sorts after the held burst, so events stay in t order across batches.
- Passwords: in a window whose title matches ``password_title_patterns`` every typing burst is a
  password: none of its keys is written, only one ``Marker(kind="redacted", text="<PASSWORD>")``. The
  platform's accessibility probe (AT-SPI, when present) and any ``password_probes`` can flag a burst in
  other windows too.
- Masked echo (any other window): at the first printable key typed into a field (after a click, a tab
  or a new burst) the echo thread grabs the area where typing lands - the focused window, or a band of
  ±``ECHO_BAND_HALF_HEIGHT`` px around the last click in it; once ``ECHO_FIRST_CHECK_KEYS`` keys went in
  it grabs the same area again after ``ECHO_RENDER_SECONDS`` and reads both with ``masked_echo``: a row
  of identical glyphs (``*``, ``•``, ``●`` …) as many as the keys typed, which could not be those keys
  drawn as text, is a password field. Until the verdict arrives (at most
  ``ECHO_VERDICT_TIMEOUT_SECONDS``; none by then counts as a password) the processing thread holds every
  new message, so the burst cannot be released before it. A password verdict cuts the held burst at
  the field's first key (``end_burst_as_password``): no key from there on is written, one
  ``<PASSWORD>`` marker stands at that key, and the rest of the burst is dropped as in a password
  window. Undecided: another look after ``ECHO_RECHECK_KEYS`` more keys, at most
  ``ECHO_MAX_CHECKS`` per field. Two small grabs per field; the pixels are never written anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
import uuid
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from PIL import Image

from demotrace.capture import keys as key_names
from demotrace.capture import triggers as frame_policy
from demotrace.capture.blackout import black_boxes
from demotrace.capture.grab import FrameBuffers, grab_pixels
from demotrace.capture.masked_echo import EchoReading, GreyImage, grey, read_masked_echo
from demotrace.capture.paths import TimedPoint, relative_path
from demotrace.capture.platform import DesktopPlatform, PlatformError, ScreenLayout, WindowInfo, open_platform
from demotrace.capture.scrub import FrameScrubber
from demotrace.device.spool import Spool, SpoolError, open_spool
from demotrace.frames.encoder import FrameEncoder
from demotrace.frames.pixels import ScreenPixels
from demotrace.frames.settings import PowerState, choose_encoding
from demotrace.geometry import Box
from demotrace.model import (
    Batch,
    Button,
    ButtonName,
    Event,
    FrameTaken,
    Key,
    Marker,
    Monitor,
    MovePath,
    Scroll,
    SessionHeader,
    Window,
)
from demotrace.policy import (
    CAPTURE_ALL,
    DEFAULT_LOCAL_POLICY,
    CaptureGate,
    Decision,
    PolicyError,
    WindowContext,
    decide,
    decide_device,
    decision_expires,
    is_password_window,
    load_policy,
)
from demotrace.protocol import REDACTED_MARKER_KIND
from demotrace.redact.ocr import OcrError
from demotrace.redact.paint import blackout_pixels
from demotrace.redact.text import placeholder, redact_text
from demotrace.redact.typing_burst import TypingBurstRedactor
from demotrace.threads import name_os_thread

RECORDER_VERSION = "0.1.0"
log = logging.getLogger(__name__)

# Message codes on the event queue (tuples keep the hot path to one allocation).
_MOVE, _BUTTON, _SCROLL, _KEY_DOWN, _KEY_UP, _WINDOW, _FRAME_DONE, _DRAIN, _GATE, _MARK, _ECHO = range(11)

# A pointer path is cut after this many raw points (~4 s of motion at 125 Hz): it bounds memory and
# the simplifier's worst case (quadratic in the points of one path).
MAX_RAW_PATH_POINTS = 500
# Frame requests waiting for the grabber; more than this while it is busy are dropped (bursts of clicks).
MAX_PENDING_FRAMES = 4
# Grabbed images waiting for OCR, and scrubbed ones waiting for the encoder (6 MB each at 1080p).
MAX_PENDING_IMAGES = 1
STOP_DRAIN_SECONDS = 0.3
LATENCY_SAMPLES = 1 << 16  # per listener; a power of two so the ring index is a mask
LISTENER_READY_SECONDS = 10.0
_BUTTON_NAMES: dict[str, ButtonName] = {"left": "left", "right": "right", "middle": "middle"}
NOT_CAPTURED_MARKER_KIND = "not_captured"
INPUT_ONLY_MARKER_KIND = "input_only"
PASSWORD_KIND = "PASSWORD"
# Reasons that belong to the focused window (others - pause, exemption, battery - hold for every window).
_WINDOW_REASONS = frozenset({"denied app", "denied title", "not allowlisted"})
# Button events of clicks held while the focused window may not be captured (a few clicks' worth).
MAX_HELD_CLICK_EVENTS = 8
# The redactor ends a quiet burst once *more* than its gap has passed: wake just after that.
_QUIET_MARGIN_SECONDS = 0.01
# Masked echo: the first look once this many printable keys went into one field (fewer cannot be told
# apart from text), another after this many more if it could not tell, at most this many per field.
ECHO_FIRST_CHECK_KEYS = 4
ECHO_RECHECK_KEYS = 3
ECHO_MAX_CHECKS = 3
ECHO_RENDER_SECONDS = 0.05  # the application draws the echo of the last key meanwhile
# How long the processing thread holds everything after a look, waiting for its verdict. No answer by
# then: the field is taken for a password (nothing that may be one is written). A look takes ~0.06 s;
# the margin is for a busy machine, where a thread may wait that long for a core.
ECHO_VERDICT_TIMEOUT_SECONDS = 1.0
ECHO_BAND_HALF_HEIGHT = 60  # the area looked at: this far above and below the click into the field

# Asks whether the focused widget takes a password: True, False, or None (cannot tell). Called on the
# processing thread at the first key of a typing burst, with the focused window.
PasswordProbe = Callable[[WindowInfo | None], bool | None]


class RecorderError(Exception):
    """Recording cannot start or continue; the message says why and what to do."""


@dataclass(frozen=True)
class LatencyStats:
    """Duration of the input callbacks themselves (the hot path), in nanoseconds."""

    count: int
    p50_ns: int
    p99_ns: int
    max_ns: int


class _LatencyRing:
    """Preallocated ring of callback durations; written by one listener thread only.

    Two clocks: wall time (what the callback held its thread for, OS preemption included: on a busy
    machine another process may run in the middle) and the thread's CPU time (the callback's own work)."""

    __slots__ = ("count", "cpu_samples", "mask", "samples")

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self.samples = array("q", bytes(8 * size))
        self.cpu_samples = array("q", bytes(8 * size))
        self.mask = size - 1
        self.count = 0

    def add(self, wall_ns: int, cpu_ns: int) -> None:
        index = self.count & self.mask
        self.samples[index] = wall_ns
        self.cpu_samples[index] = cpu_ns
        self.count += 1

    def values(self) -> list[int]:
        return list(self.samples[: min(self.count, self.mask + 1)])

    def cpu_values(self) -> list[int]:
        return list(self.cpu_samples[: min(self.count, self.mask + 1)])


def latency_stats(samples: list[int]) -> LatencyStats:
    if not samples:
        return LatencyStats(0, 0, 0, 0)
    ordered = sorted(samples)
    last = len(ordered) - 1
    return LatencyStats(len(ordered), ordered[last // 2], ordered[(last * 99) // 100], ordered[last])


@dataclass(frozen=True)
class _Clock:
    """Converts perf_counter_ns stamps to (t, wall)."""

    start_ns: int
    start_wall: float

    def t(self, stamp_ns: int) -> float:
        return stamp_ns / 1e9

    def wall(self, stamp_ns: int) -> float:
        return self.start_wall + (stamp_ns - self.start_ns) / 1e9


_display_environment_lock = threading.Lock()


@contextlib.contextmanager
def _display_environment(display: str | None) -> Iterator[None]:
    """pynput opens ``Display()`` from $DISPLAY; point it at ours while the listeners connect."""
    if display is None:
        yield
        return
    with _display_environment_lock:
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous


def _listener_ready(listener: Any, timeout: float) -> bool:
    """Wait for a pynput listener to connect; False if its thread died first (it never says so itself)."""
    waiter = threading.Thread(target=listener.wait, name="demotrace-listener-wait", daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive() and bool(listener.is_alive())


def _stop_listeners(listeners: list[Any], display: str | None) -> None:
    """Stop pynput listeners, and make sure they really end.

    pynput 1.8 queues RecordDisableContext on the connection its listener thread is blocked reading,
    so the request is only sent when the next input event arrives: an idle desktop never stops.
    Disabling the same context from a connection of our own ends the listener at once.
    """
    for listener in listeners:
        listener.stop()
    contexts = [getattr(listener, "_context", None) for listener in listeners]
    if any(context is not None for context in contexts):
        from Xlib import display as xdisplay
        from Xlib import error

        with contextlib.suppress(error.DisplayError, error.ConnectionClosedError, OSError):
            connection = xdisplay.Display(display)
            try:
                for context in contexts:
                    if context is not None:
                        connection.record_disable_context(context)
                connection.sync()
            finally:
                connection.close()
    for listener in listeners:
        # pynput's join re-raises whatever ended the listener; we are stopping, so it no longer matters.
        with contextlib.suppress(Exception):
            listener.join()


def window_context(info: WindowInfo | None) -> WindowContext | None:
    """What the policy is told about a window."""
    if info is None:
        return None
    return WindowContext(app=info.app, instance=info.instance, process=info.process, title=info.title)


class _CaptureNotAllowed(Exception):
    """The screen may no longer be captured (a pause or exemption began after the frame was asked for)."""


class _PolicyScreen:
    """Grabs that show only what the policy allows (the only way the frame thread reads the screen).

    The windows are listed before and after the grab and the union of both blackouts is painted, so a
    window that moved or was raised during the grab is black wherever it may have been.
    """

    def __init__(self, screen: Any, platform: DesktopPlatform, gate: CaptureGate) -> None:
        self._screen = screen
        self._platform = platform
        self._gate = gate
        self._buffers = FrameBuffers()

    def _device_allows_screen(self) -> None:
        gate = self._gate
        if not decide_device(gate.policy, gate.state, gate.clock()).screen_allowed:
            raise _CaptureNotAllowed

    def grab_pixels(self, monitor: Monitor) -> ScreenPixels:
        self._device_allows_screen()
        before = self._platform.visible_windows()
        pixels = grab_pixels(self._screen, monitor, self._buffers)
        after = self._platform.visible_windows()
        self._device_allows_screen()
        gate = self._gate
        policy, state, now = gate.policy, gate.state, gate.clock()
        width, height = pixels.size
        scale_x, scale_y = width / monitor.width, height / monitor.height  # 1 on X11; HiDPI elsewhere
        for windows in [before] if after == before else [before, after]:
            stacked = [(window, decide(policy, window_context(window), state, now)) for window in windows]
            boxes = [
                Box(
                    math.floor(b.left * scale_x),
                    math.floor(b.top * scale_y),
                    math.ceil(b.right * scale_x),
                    math.ceil(b.bottom * scale_y),
                )
                for b in black_boxes(monitor, stacked)
            ]
            blackout_pixels(pixels, boxes)
        return pixels

    def close(self) -> None:
        self._buffers.clear()
        self._screen.close()


def _window_event(info: WindowInfo | None, layout: ScreenLayout, t: float, wall: float) -> Window:
    if info is None:  # nothing focused: the desktop itself
        return Window(
            t=t,
            wall=wall,
            app="",
            title="",
            pid=None,
            x=0,
            y=0,
            width=layout.width,
            height=layout.height,
            window_id=0,
        )
    return Window(
        t=t,
        wall=wall,
        app=info.app,
        title=info.title,
        pid=info.pid,
        x=info.x,
        y=info.y,
        width=info.width,
        height=info.height,
        window_id=info.window_id,
    )


@dataclass
class _Grabbed:
    """Pixels of one grab on their way from the grab thread through OCR to the encoder: one buffer,
    never copied; the OCR thread paints sensitive text black in it, or marks it ``held`` for a
    deferred scrub."""

    pixels: ScreenPixels
    monitor: Monitor
    grabbed_ns: int
    trigger: str
    stamp_ns: int
    window_id: int
    held: bool = False


class _FrameGrabber:
    """Grabs frames on one thread (at once: the frame must show the screen before the action), scrubs
    them (OCR redaction) on a second and encodes and spools them on a third, then reports FrameTaken
    on the event queue. OCR takes a second or more: it must never delay the next grab, and encoding
    need not wait for the next frame's OCR. The OCR thread's CPU is the screen safeguard's cost,
    reported apart from the recorder's own (its OS thread name is "dt-ocr")."""

    def __init__(
        self,
        recorder: Recorder,
        layout: ScreenLayout,
        clock: _Clock,
        platform: DesktopPlatform,
        scrubber: FrameScrubber | None = None,
    ) -> None:
        self._recorder = recorder
        self._layout = layout
        self._clock = clock
        self._platform = platform
        self._requests: queue.Queue[tuple[str, int, int, int, int] | None] = queue.Queue(MAX_PENDING_FRAMES)
        # Bounded: raw 1080p frames are 6 MB each; a full queue makes the thread before it wait.
        self._grabbed: queue.Queue[_Grabbed | None] = queue.Queue(MAX_PENDING_IMAGES)
        self._scrubbed: queue.Queue[_Grabbed | None] = (
            queue.Queue(MAX_PENDING_IMAGES) if scrubber is not None else self._grabbed
        )
        self._threads = [
            threading.Thread(target=self._run, name="demotrace-frames", daemon=True),
            threading.Thread(target=self._run_encode, name="demotrace-encode", daemon=True),
        ]
        if scrubber is not None:
            self._threads.append(threading.Thread(target=self._run_scrub, name="demotrace-ocr", daemon=True))
        self.frame_bytes: list[int] = []
        self._power = PowerState()
        self._encoder = FrameEncoder(choose_encoding(self._power))
        self._scrubber = scrubber
        self.scrub_cpu_seconds = 0.0
        self.frames_held = 0
        # The focused window's id, written by the processing thread; a change makes the next frame a key.
        self.window_id = 0
        self._encoded_window_id: int | None = None

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def request(self, trigger: str, stamp_ns: int, x: int, y: int) -> bool:
        try:
            # The window as the processor knows it when the action starts: the grab may come later.
            self._requests.put_nowait((trigger, stamp_ns, x, y, self.window_id))
        except queue.Full:
            return False
        return True

    def finish(self) -> None:
        """Grab, scrub and encode what was asked for, then end. Blocks so no request is lost."""
        self._requests.put(None)
        for thread in self._threads:
            thread.join()

    def _done(self, taken: FrameTaken | None) -> None:
        self._recorder._events.put_nowait((_FRAME_DONE, taken))

    def _run(self) -> None:
        import mss

        name_os_thread()
        recorder = self._recorder
        screen: _PolicyScreen | None = None
        try:
            screen = _PolicyScreen(mss.MSS(display=recorder.display), self._platform, recorder.gate)
        except Exception as failure:
            recorder._fail(RecorderError(f"cannot grab the screen: {failure}"))
        try:
            # Every request gets a _FRAME_DONE, even a failed one: the processor counts them.
            while (request := self._requests.get()) is not None:
                grabbed: _Grabbed | None = None
                try:
                    if screen is not None:
                        grabbed = self._grab(screen, *request)
                except _CaptureNotAllowed:
                    pass  # the screen went out of bounds between the request and the grab
                except Exception:
                    log.exception("frame grab failed; the action is recorded without a frame")
                if grabbed is None:
                    self._done(None)
                else:
                    self._grabbed.put(grabbed)
        finally:
            self._grabbed.put(None)
            if screen is not None:
                screen.close()

    def _grab(
        self, screen: _PolicyScreen, trigger: str, stamp_ns: int, x: int, y: int, window_id: int
    ) -> _Grabbed:
        monitor = frame_policy.monitor_at(self._layout.monitors, x, y)
        grabbed_ns = time.perf_counter_ns()
        pixels = screen.grab_pixels(monitor)
        return _Grabbed(pixels, monitor, grabbed_ns, trigger, stamp_ns, window_id)

    def _run_scrub(self) -> None:
        name_os_thread()
        scrubber = self._scrubber
        assert scrubber is not None
        try:
            while (grabbed := self._grabbed.get()) is not None:
                try:
                    self._scrub(scrubber, grabbed)
                except OcrError as failure:
                    # No frame rather than an unscrubbed one.
                    log.error("screen scrub failed, the frame is dropped: %s", failure)
                    self._done(None)
                    continue
                except Exception:
                    log.exception("screen scrub failed, the frame is dropped")
                    self._done(None)
                    continue
                self._scrubbed.put(grabbed)
        finally:
            self._scrubbed.put(None)

    def _scrub(self, scrubber: FrameScrubber, grabbed: _Grabbed) -> None:
        state, policy = self._recorder.gate.state, self._recorder.gate.policy
        if state.on_battery and policy.defer_ocr_on_battery:
            # Scrubbed later, on mains power; until then it is never offered for upload.
            grabbed.held = True
            return
        started = time.thread_time()
        scrubber.cover(grabbed.pixels, grabbed.monitor)
        self.scrub_cpu_seconds += time.thread_time() - started

    def _run_encode(self) -> None:
        name_os_thread()
        recorder = self._recorder
        while (grabbed := self._scrubbed.get()) is not None:
            taken: FrameTaken | None = None
            try:
                taken = self._encode(grabbed)
            except SpoolError as failure:
                recorder._fail(RecorderError(f"cannot write a frame to the spool: {failure}"))
            except Exception:
                log.exception("frame encoding failed; the action is recorded without a frame")
            finally:
                self._done(taken)

    def _encoding_for_power(self) -> None:
        """Encoder settings follow the power state (cheaper effort on battery); a change starts a chain."""
        state = self._recorder.gate.state
        power = PowerState(on_battery=state.on_battery, battery_percent=state.battery_percent)
        if power != self._power:
            self._power = power
            self._encoder.settings = choose_encoding(power)

    def _encode(self, grabbed: _Grabbed) -> FrameTaken:
        recorder = self._recorder
        pixels, monitor, held = grabbed.pixels, grabbed.monitor, grabbed.held
        self._encoding_for_power()
        # Held frames are self-contained (the scrub worker rewrites them whole, so no delta may refer
        # to one): a key frame, and the chain starts again after it. The encoder's settings decide
        # whether a window switch makes a key frame.
        switched = grabbed.window_id != self._encoded_window_id
        encoded = self._encoder.encode(pixels, monitor, key=switched, force_key=held)
        if held:
            self._encoder.reset()
        self._encoded_window_id = grabbed.window_id
        frame = encoded.to_frame(
            session_id=recorder.session_id,
            device_id=recorder.device_id,
            t=self._clock.t(grabbed.grabbed_ns),
            wall=self._clock.wall(grabbed.grabbed_ns),
            left=monitor.left,
            top=monitor.top,
        )
        try:
            recorder.spool.append([frame], held=held)
        except BaseException:
            self._encoder.reset()  # no later frame may refer to one that was never stored
            raise
        self.frames_held += held
        self.frame_bytes.append(len(encoded.data))
        return FrameTaken(
            t=self._clock.t(grabbed.stamp_ns),
            wall=self._clock.wall(grabbed.stamp_ns),
            frame_id=encoded.frame_id,
            left=monitor.left,
            top=monitor.top,
            width=encoded.width,
            height=encoded.height,
            trigger=grabbed.trigger,
            grabbed_t=self._clock.t(grabbed.grabbed_ns),
        )


@dataclass(frozen=True)
class _EchoRequest:
    check_id: int
    area: dict[str, int]
    typed: str | None  # None: grab the area as it is before the typing; else: look at the echo of this
    not_before: float = 0.0  # perf_counter seconds: the echo has rendered by then


class _EchoChecker:
    """Grabs the area where typing lands (at a field's first key, then once a few keys' echo has
    rendered) and reads it with ``masked_echo`` on its own thread; the verdict goes on the event queue.
    The pixels stay in this thread's memory: nothing of them is encoded, stored or written."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._requests: queue.SimpleQueue[_EchoRequest | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="demotrace-echo", daemon=True)
        self.cpu_seconds = 0.0
        self.looks = 0

    def start(self) -> None:
        self._thread.start()

    def before(self, check_id: int, area: dict[str, int]) -> None:
        self._requests.put_nowait(_EchoRequest(check_id, area, None))

    def after(self, check_id: int, area: dict[str, int], typed: str, not_before: float) -> None:
        self._requests.put_nowait(_EchoRequest(check_id, area, typed, not_before))

    def finish(self) -> None:
        self._requests.put_nowait(None)
        self._thread.join()

    def _run(self) -> None:
        import mss

        name_os_thread()
        screen: Any = None
        try:
            screen = mss.MSS(display=self._recorder.display)
        except Exception as failure:
            log.warning("masked-echo check off: cannot grab the screen: %s", failure)
        before: tuple[int, GreyImage] | None = None
        try:
            while (request := self._requests.get()) is not None:
                if request.typed is None:
                    pixels = self._grab(screen, request.area)
                    before = None if pixels is None else (request.check_id, pixels)
                    continue
                delay = request.not_before - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # one wait for the echo to render, not a poll
                reading = EchoReading("undecided", 0, "no picture of the area")
                after = self._grab(screen, request.area)
                if after is not None and before is not None and before[0] == request.check_id:
                    started = time.thread_time()
                    try:
                        reading = read_masked_echo(before[1], after, request.typed)
                    except Exception:  # a verdict must come, or every field would wait for its timeout
                        log.exception("masked-echo reading failed")
                    self.cpu_seconds += time.thread_time() - started
                    self.looks += 1
                self._recorder._events.put_nowait((_ECHO, time.perf_counter_ns(), request.check_id, reading))
        finally:
            if screen is not None:
                screen.close()

    def _grab(self, screen: Any, area: dict[str, int]) -> GreyImage | None:
        if screen is None:
            return None
        try:
            started = time.thread_time()
            shot = screen.grab(area)
            pixels = grey(Image.frombuffer("RGB", shot.size, shot.raw, "raw", "BGRX", 0, 1))
            self.cpu_seconds += time.thread_time() - started
            return pixels
        except Exception:
            log.exception("masked-echo grab failed")
            return None


@dataclass
class _EchoField:
    """The printable keys typed into one field so far, as the masked-echo check follows them."""

    check_id: int
    burst_start_t: float  # the typing burst (the redactor's) it belongs to
    start_ns: int  # its first key (a shift before the first character counts)
    area: dict[str, int]
    text: list[str]
    next_check: int = ECHO_FIRST_CHECK_KEYS
    checks: int = 0
    settled: bool = False  # no more looks: the echo is text, or it could not tell often enough


class _Processor:
    """Queue → decided, redacted model events → batches. All state here is touched by the processing
    thread only."""

    def __init__(
        self,
        recorder: Recorder,
        platform: DesktopPlatform,
        header: SessionHeader,
        layout: ScreenLayout,
        clock: _Clock,
        grabber: _FrameGrabber,
        follow_pointer_window: bool,
        pointer: tuple[int, int],
        window: WindowInfo | None,
        password_probes: Sequence[PasswordProbe],
        echo_checker: _EchoChecker | None = None,
    ) -> None:
        self._recorder = recorder
        self._platform = platform
        self._header: SessionHeader | None = header
        self._layout = layout
        self._clock = clock
        self._grabber = grabber
        self._follow_pointer_window = follow_pointer_window
        self._pointer = pointer
        self._pending: list[Event] = []
        self._path: list[TimedPoint] = []
        self._path_start_ns = 0
        self._first_unflushed_ns: int | None = None
        self._seq = 0
        self._held: frozenset[str] = frozenset()
        self._triggers = frame_policy.TriggerState()
        self._double_click_s = header.double_click_ms / 1000
        self._double_click_px = header.double_click_px
        self._frames_in_flight = 0
        self._last_window: tuple[int, str] | None = None
        # The privacy gate: the window events are decided against, and the decision in force.
        self._gate = recorder.gate
        # The policy and state in force at this point of the event queue (see Recorder._on_gate_changed).
        self._policy = recorder.gate.policy
        self._state = recorder.gate.state
        self._window = window
        self._decision = CAPTURE_ALL
        self._decision_expires: float | None = None  # gate-clock time at which time alone may change it
        self._in_password_window = False
        self._span_start_ns = 0  # start of the current not-captured span
        self._span_markers: list[Marker] = []  # task markers set during it, written after its marker
        self._dropped_presses: set[str] = set()  # keys whose press was not written: drop their release
        self._dropped_buttons: set[ButtonName] = set()  # the same for buttons
        self._held_buttons: set[ButtonName] = set()  # pressed in a held click, not released yet
        self._held_clicks: list[tuple[int, Button]] = []  # (window id clicked, event) during a span
        self._target_cache: tuple[tuple[int, int], tuple[bool, int]] | None = None
        self._password_probes = password_probes
        self._password_key_t: float | None = None  # last key of a password burst in progress
        # Typed-text redaction: the burst it holds, and where that burst starts (batches stop there).
        self._redactor = TypingBurstRedactor()
        self._burst_start_t: float | None = None
        self._last_key_t: float | None = None
        # Masked echo: the field being typed into, the key that may start the next one, the look whose
        # verdict everything waits for (check id, perf_counter deadline) and the messages held meanwhile.
        self._echo_checker = echo_checker
        self._echo_field: _EchoField | None = None
        self._echo_lead: tuple[float, int] | None = (
            None  # (burst start t, ns) of a key before a field's first
        )
        self._echo_ids = 0
        self._echo_waiting: tuple[int, float] | None = None
        self._stalled: deque[tuple[Any, ...]] = deque()
        self._last_click: tuple[int, int, int] | None = None  # x, y, window id
        self._draining = False
        self._thread = threading.Thread(target=self._run, name="demotrace-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    # -- helpers -------------------------------------------------------------------------------

    def _add(self, event: Event) -> None:
        """Queue an event that may be written for the next batch."""
        self._pending.append(event)
        if self._first_unflushed_ns is None:
            self._first_unflushed_ns = time.perf_counter_ns()

    def _released(self, events: list[Event]) -> None:
        for event in events:
            self._add(event)
        if not self._redactor.open:
            self._burst_start_t = None

    def _emit(self, event: Event) -> None:
        """Everything but frames passes the typed-text redactor, which may hold it until its burst ends."""
        if isinstance(event, FrameTaken):
            self._add(event)  # pixels, not typed text; the batch split keeps it in order
            return
        redactor = self._redactor
        was_open = redactor.open
        released = redactor.feed(event)
        if redactor.open and (not was_open or released):
            self._burst_start_t = event.t  # a new burst starts with this event
        if redactor.open and isinstance(event, Key):
            self._last_key_t = event.t
        self._released(released)

    def _end_burst(self) -> None:
        if self._redactor.open:
            self._released(self._redactor.end_burst().events)

    def _marker(self, ns: int, kind: str, text: str = "", duration: float = 0.0) -> Marker:
        return Marker(t=self._clock.t(ns), wall=self._clock.wall(ns), kind=kind, text=text, duration=duration)

    def _close_path(self) -> None:
        if not self._path:
            return
        ns = self._path_start_ns
        points = relative_path(self._path)
        self._path = []
        self._emit(MovePath(t=self._clock.t(ns), wall=self._clock.wall(ns), points=points))

    def _request_frame(self, trigger: str, stamp_ns: int) -> None:
        if not self._decision.screen_allowed:
            return
        x, y = self._pointer
        if self._grabber.request(trigger, stamp_ns, x, y):
            self._frames_in_flight += 1

    def _note_window(self, info: WindowInfo | None, stamp_ns: int, *, force: bool = False) -> None:
        identity = (0, "") if info is None else (info.window_id, info.title)
        if identity == self._last_window and not force:
            return
        self._last_window = identity
        self._grabber.window_id = identity[0]
        self._emit(_window_event(info, self._layout, self._clock.t(stamp_ns), self._clock.wall(stamp_ns)))

    def _decide_frame(self, kind: frame_policy.InputKind, stamp_ns: int, **facts: Any) -> None:
        if not self._decision.screen_allowed:
            return
        trigger, self._triggers = frame_policy.frame_trigger(
            self._triggers,
            kind,
            stamp_ns / 1e9,
            double_click_seconds=self._double_click_s,
            double_click_px=self._double_click_px,
            **facts,
        )
        if trigger is not None:
            self._request_frame(trigger, stamp_ns)

    # -- the privacy gate ----------------------------------------------------------------------

    def _refresh_decision(self, ns: int) -> None:
        """Decide again (the window or the gate changed, or a pause ran out) and act on a change at ``ns``."""
        policy, state, now = self._policy, self._state, self._gate.clock()
        context = window_context(self._window)
        decision = decide(policy, context, state, now)
        self._decision_expires = decision_expires(state, now)
        self._in_password_window = is_password_window(policy, context)
        self._target_cache = None
        if decision != self._decision:
            previous, self._decision = self._decision, decision
            self._change_decision(previous, decision, ns)

    def _close_span(self, reason: str, ns: int) -> None:
        """The not-captured span ends at ``ns``: its one marker (stamped at its start), then the task
        markers set during it."""
        duration = max(0, ns - self._span_start_ns) / 1e9
        self._emit(self._marker(self._span_start_ns, NOT_CAPTURED_MARKER_KIND, reason, duration))
        for marker in self._span_markers:
            self._emit(marker)
        self._span_markers = []

    def _change_decision(self, previous: Decision, decision: Decision, ns: int) -> None:
        if previous.capture == "nothing":
            self._close_span(previous.reason, ns)
        if decision.capture == "nothing":
            # What was captured before the span is complete: write it; from here on nothing is kept.
            self._close_path()
            self._end_burst()
            self._password_key_t = None
            self._span_start_ns = ns
            self._held_clicks = []
            self._held_buttons.clear()
            return
        if previous.capture == "nothing":
            self._note_window(self._window, ns, force=True)
            self._release_held_clicks()
        if decision.capture == "input_only" and previous.capture != "input_only":
            self._emit(self._marker(ns, INPUT_ONLY_MARKER_KIND, decision.reason))
        if decision.screen_allowed and not previous.screen_allowed:
            self._triggers = frame_policy.TriggerState()  # the next action gets a fresh frame

    def _check_expiry(self, ns: int) -> None:
        """A pause that ran out ends at its own instant, even if we only notice it now."""
        expires = self._decision_expires
        if expires is None:
            return
        now = self._gate.clock()
        if now < expires:
            return
        ended_ns = time.perf_counter_ns() - int((now - expires) * 1e9)
        self._refresh_decision(max(self._span_start_ns, min(ns, ended_ns)))

    def _set_window(self, info: WindowInfo | None, ns: int) -> None:
        self._window = info
        self._refresh_decision(ns)
        if self._decision.input_allowed:
            self._note_window(info, ns)

    def _user_marker(self, ns: int, kind: str, text: str) -> None:
        if self._decision.reason == "exempt":
            return  # an exempt person's tasks are not recorded either
        # The text is typed by the person, so it gets the same scrub as any typed text.
        marker = self._marker(ns, kind, redact_text(text).text)
        if not self._decision.input_allowed:
            self._span_markers.append(marker)
            return
        self._password_key_t = None
        self._close_path()
        self._emit(marker)

    def _password_typing(self, key: str, down: bool, typed: bool, ns: int) -> bool:
        """Is this key part of a password burst (never written)? Starts one, with its marker, if needed."""
        t = self._clock.t(ns)
        in_burst = self._password_key_t is not None and t - self._password_key_t <= self._redactor.gap_s
        if not in_burst:
            self._password_key_t = None
            if not down:
                return self._in_password_window
            if not (self._in_password_window or (typed and self._probe_password())):
                return False
            self._decide_frame("key_down", ns)  # the screen before the password is typed
            self._close_path()
            self._emit(self._marker(ns, REDACTED_MARKER_KIND, placeholder(PASSWORD_KIND)))
        if down:
            self._password_key_t = t
            self._dropped_presses.add(key)
        return True

    def _target_allowed(self, x: int, y: int) -> tuple[bool, int]:
        """May input to the window under the pointer be captured (and that window's id)? A click or a
        scroll lands there, whichever window has focus. Without a window manager the focused window is
        the one under the pointer already."""
        if self._follow_pointer_window:
            return True, self._window.window_id if self._window is not None else 0
        if self._target_cache is not None and self._target_cache[0] == (x, y):
            return self._target_cache[1]
        target = self._platform.window_at(x, y)
        decision = decide(self._policy, window_context(target), self._state, self._gate.clock())
        answer = (
            decision.input_allowed,
            target.window_id if target is not None else 0,
        )
        self._target_cache = ((x, y), answer)
        return answer

    def _button_allowed(self, event: Button) -> bool:
        """Is this button event written now? A press on a window that may not be captured is dropped
        with its release. While the focused window may not be captured, a click on one that may is
        held: if that window takes focus next (the click that brings the person back), the click is
        written after the span's marker; otherwise it is forgotten."""
        if not event.down:
            if event.button in self._dropped_buttons:
                self._dropped_buttons.discard(event.button)
                return False
            if event.button in self._held_buttons:
                self._held_buttons.discard(event.button)
                self._held_clicks.append((self._held_clicks[-1][0], event))
                return False
            return self._decision.input_allowed
        self._target_cache = None  # a click may raise or open windows: look again next time
        allowed, target_id = self._target_allowed(event.x, event.y)
        if allowed and self._decision.input_allowed:
            return True
        if allowed and self._decision.reason in _WINDOW_REASONS and target_id:
            self._held_buttons.add(event.button)
            self._held_clicks = [*self._held_clicks, (target_id, event)][-MAX_HELD_CLICK_EVENTS:]
        else:
            self._dropped_buttons.add(event.button)
        return False

    def _release_held_clicks(self) -> None:
        """Write the clicks held during the span that ended, if they landed on the window now focused."""
        focused = self._window.window_id if self._window is not None else 0
        clicks = [event for target, event in self._held_clicks if target == focused]
        self._held_clicks = []
        self._held_buttons.clear()
        self._close_path()
        for event in clicks:
            self._emit(event)

    def _probe_password(self) -> bool:
        if self._redactor.open:
            return False  # only the first key of a burst asks; the rest follow it
        return any(probe(self._window) for probe in self._password_probes)

    # -- masked echo ---------------------------------------------------------------------------

    def _echo_area(self) -> dict[str, int] | None:
        """Where the typing lands: the focused window, narrowed to a band around the last click if it
        landed in that window (the click into the field)."""
        window = self._window
        if window is None:
            return None
        left, top = max(window.x, 0), max(window.y, 0)
        right = min(window.x + window.width, self._layout.width)
        bottom = min(window.y + window.height, self._layout.height)
        click = self._last_click
        if click is not None and click[2] == window.window_id and top <= click[1] < bottom:
            top = max(top, click[1] - ECHO_BAND_HALF_HEIGHT)
            bottom = min(bottom, click[1] + ECHO_BAND_HALF_HEIGHT)
        if right - left < 8 or bottom - top < 8:
            return None
        return {"left": left, "top": top, "width": right - left, "height": bottom - top}

    def _watch_echo(self, key: str, char: str | None, ns: int) -> None:
        """Follow a key press that went into the held burst: start a field at its first printable key
        (grab the area), and look at the echo once enough keys went in (everything waits for it)."""
        checker, burst_t = self._echo_checker, self._burst_start_t
        if checker is None or burst_t is None:
            self._echo_field = None
            return
        field = self._echo_field
        if field is not None and field.burst_start_t != burst_t:
            field = self._echo_field = None
        if field is None and (self._echo_lead is None or self._echo_lead[0] != burst_t):
            self._echo_lead = (burst_t, ns)
        if char is not None and len(char) == 1 and char.isprintable():
            if field is None:
                area = self._echo_area()
                if area is None:
                    return
                self._echo_ids += 1
                start_ns = self._echo_lead[1] if self._echo_lead is not None else ns
                field = self._echo_field = _EchoField(self._echo_ids, burst_t, start_ns, area, [])
                self._echo_lead = None
                checker.before(field.check_id, area)
            field.text.append(char)
            if not field.settled and len(field.text) >= field.next_check:
                now = time.perf_counter()
                checker.after(field.check_id, field.area, "".join(field.text), now + ECHO_RENDER_SECONDS)
                self._echo_waiting = (field.check_id, now + ECHO_VERDICT_TIMEOUT_SECONDS)
        elif key == "backspace":
            if field is not None and field.text:
                field.text.pop()
        elif char is not None:  # tab, enter: what follows may go to another field
            self._echo_field = self._echo_lead = None

    def _on_echo_verdict(self, check_id: int, reading: EchoReading) -> None:
        waiting = self._echo_waiting
        if waiting is None or waiting[0] != check_id:
            return  # too late: the timeout settled it
        self._echo_waiting = None
        field = self._echo_field
        if field is None or field.check_id != check_id:
            return
        if reading.verdict == "masked":
            self._hide_password(field)
        elif reading.verdict == "text":
            field.settled = True
        else:
            field.checks += 1
            field.settled = field.checks >= ECHO_MAX_CHECKS
            field.next_check = len(field.text) + ECHO_RECHECK_KEYS

    def _settle_overdue_echo(self) -> None:
        waiting = self._echo_waiting
        if waiting is not None and time.perf_counter() >= waiting[1]:
            log.warning("no masked-echo verdict in time: the typing is kept out as a password")
            self._on_echo_verdict(waiting[0], EchoReading("masked", 0, "no verdict in time"))

    def _hide_password(self, field: _EchoField) -> None:
        """The field takes a password: cut its keys out of the held burst, as if typed in a password
        window (one marker at its first key, the rest of the burst's keys dropped as they come)."""
        cut = self._redactor.end_burst_as_password(self._clock.t(field.start_ns))
        self._dropped_presses |= cut.held
        self._released(cut.events)
        self._add(self._marker(field.start_ns, REDACTED_MARKER_KIND, placeholder(PASSWORD_KIND)))
        self._password_key_t = self._last_key_t
        self._echo_field = None

    # -- one message ---------------------------------------------------------------------------

    def _handle(self, message: tuple[Any, ...]) -> None:
        code = message[0]
        clock = self._clock
        if code == _FRAME_DONE:
            self._frames_in_flight -= 1
            taken: FrameTaken | None = message[1]
            if taken is not None:
                self._emit(taken)
            return
        ns: int = message[1]
        self._check_expiry(ns)
        if code == _GATE:
            _, _, self._policy, self._state = message
            self._refresh_decision(ns)
            return
        if code == _MARK:
            _, _, kind, text = message
            self._user_marker(ns, kind, text)
            return
        if code == _MOVE:
            _, _, x, y = message
            self._pointer = (x, y)
            if not self._decision.input_allowed:
                return
            if not self._path:
                self._path_start_ns = ns
                if self._first_unflushed_ns is None:
                    self._first_unflushed_ns = ns
            self._path.append((x, y, ns / 1e9))
            if len(self._path) >= MAX_RAW_PATH_POINTS:
                self._close_path()
            return
        if code == _WINDOW:
            self._password_key_t = None
            self._set_window(message[2], ns)
            return
        t_of = clock.t
        wall_of = clock.wall
        if code == _BUTTON:
            _, _, x, y, button, pressed = message
            self._pointer = (x, y)
            name = _BUTTON_NAMES.get(getattr(button, "name", ""))
            if name is None:
                return  # back/forward and other extra buttons have no place in the action vocabulary
            if pressed and self._follow_pointer_window:
                self._set_window(self._platform.window_at(x, y), ns)
            event = Button(t=t_of(ns), wall=wall_of(ns), down=bool(pressed), button=name, x=x, y=y)
            if not self._button_allowed(event):
                return
            self._close_path()
            self._password_key_t = None
            if pressed:
                self._last_click = (x, y, self._window.window_id if self._window is not None else 0)
                self._decide_frame("button_down", ns, x=x, y=y, button=name)
            else:
                self._decide_frame("button_up", ns)
            self._emit(event)
        elif code == _SCROLL:
            _, _, x, y, dx, dy = message
            self._pointer = (x, y)
            if not self._decision.input_allowed or not self._target_allowed(x, y)[0]:
                return
            self._close_path()
            self._password_key_t = None
            self._decide_frame("scroll", ns)
            self._emit(Scroll(t=t_of(ns), wall=wall_of(ns), x=x, y=y, dx=dx, dy=dy))
        elif code in (_KEY_DOWN, _KEY_UP):
            _, _, pynput_key = message
            down = code == _KEY_DOWN
            info = key_names.describe_key(key_names.raw_key_of(pynput_key))
            modifiers = key_names.modifiers_held(self._held, excluding=info.key)
            # Modifier bookkeeping goes on while nothing is written, so modifiers are right on resume.
            self._held = key_names.press_modifiers(self._held, info.key, down)
            if not self._decision.input_allowed:
                if down:
                    self._dropped_presses.add(info.key)
                return
            if not down and info.key in self._dropped_presses:
                self._dropped_presses.discard(info.key)
                return
            char = key_names.typed_char(info, modifiers, down)
            if self._password_typing(info.key, down, char is not None, ns):
                return
            self._close_path()
            if down:
                is_modifier = info.key in key_names.MODIFIER_OF_KEY
                self._decide_frame(
                    "modifier_down" if is_modifier else "key_down",
                    ns,
                    hotkey=key_names.is_hotkey(info.key, modifiers),
                )
            self._emit(
                Key(
                    t=t_of(ns),
                    wall=wall_of(ns),
                    down=down,
                    key=info.key,
                    keysym=info.keysym,
                    char=char,
                    modifiers=modifiers,
                )
            )
            if down:
                self._watch_echo(info.key, char, ns)

    def _on_time_passed(self) -> None:
        """Deadlines of the queue wait: a pause that ends, a typing burst that went quiet."""
        if self._echo_waiting is not None:
            return  # everything waits for the masked-echo verdict
        now_ns = time.perf_counter_ns()
        self._check_expiry(now_ns)
        if self._redactor.open:
            self._released(self._redactor.flush_if_quiet(self._clock.t(now_ns)))

    # -- batching ------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._close_path()
        if not self._pending and self._header is None:
            return
        # Events the redactor still holds sort at or after the start of its burst: what sorts later
        # waits for them (frames of keys inside the burst), so t never goes back across batches.
        limit = self._burst_start_t
        ready = self._pending if limit is None else [event for event in self._pending if event.t <= limit]
        waiting = [] if limit is None else [event for event in self._pending if event.t > limit]
        self._first_unflushed_ns = None  # waiting events are written once the burst is released
        if not ready and self._header is None:
            return
        # A frame shares its trigger's t and must come first: it shows the screen before the action.
        events = sorted(ready, key=lambda event: (event.t, not isinstance(event, FrameTaken)))
        batch = Batch(
            batch_id=uuid.uuid4().hex,
            session_id=self._recorder.session_id,
            device_id=self._recorder.device_id,
            seq=self._seq,
            events=events,
            header=self._header,
        )
        self._recorder.spool.append([batch])
        self._seq += 1
        self._header = None
        self._pending = waiting

    def _due(self, now_ns: int) -> bool:
        if self._first_unflushed_ns is None:
            return False
        size = len(self._pending) + (1 if self._path else 0)
        return size >= self._recorder.batch_max_events or (
            now_ns - self._first_unflushed_ns >= self._recorder.batch_seconds * 1e9
        )

    def _wait_timeout(self) -> float | None:
        """Seconds to wait for a message: until the next batch is due, the held typing burst goes quiet
        or a pause ends; None (no wake-up) if none of these is pending."""
        now = time.perf_counter()
        waits: list[float] = []
        if self._first_unflushed_ns is not None:
            remaining = self._first_unflushed_ns / 1e9 + self._recorder.batch_seconds - now
            # An overdue batch waits for its frame's FrameTaken (a message), so t stays ordered.
            if remaining > 0 or self._frames_in_flight == 0:
                waits.append(remaining)
        if self._echo_waiting is not None:
            waits.append(self._echo_waiting[1] - now)  # the other deadlines wait for the verdict
        else:
            if self._redactor.open and self._last_key_t is not None:
                waits.append(self._last_key_t + self._redactor.gap_s + _QUIET_MARGIN_SECONDS - now)
            if self._decision_expires is not None:
                waits.append(self._decision_expires - self._gate.clock())
        return max(min(waits), 0.0) if waits else None

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        if message[0] == _DRAIN:
            self._draining = True
            self._grabber.finish()  # every requested frame is now on the queue
        else:
            self._handle(message)

    def _run(self) -> None:
        name_os_thread()
        events = self._recorder._events
        try:
            start_ns = self._clock.start_ns
            self._refresh_decision(start_ns)
            if self._decision.input_allowed:
                self._note_window(self._window, start_ns)
            self._request_frame("start", start_ns)
            while True:
                timeout = self._wait_timeout()
                try:
                    message = events.get() if timeout is None else events.get(timeout=timeout)
                except queue.Empty:
                    message = None
                if message is not None:
                    if message[0] == _ECHO:
                        self._on_echo_verdict(message[2], message[3])
                    elif self._echo_waiting is not None:
                        self._stalled.append(message)  # a burst must not be released before its verdict
                    else:
                        self._dispatch(message)
                self._settle_overdue_echo()
                while self._stalled and self._echo_waiting is None:
                    self._dispatch(self._stalled.popleft())
                self._on_time_passed()
                idle = not self._stalled and self._echo_waiting is None
                if self._draining and idle and self._frames_in_flight == 0 and events.empty():
                    break
                if self._frames_in_flight == 0 and self._due(time.perf_counter_ns()):
                    self._flush()
            stop_ns = time.perf_counter_ns()
            self._close_path()
            if self._decision.capture == "nothing":
                self._close_span(self._decision.reason, stop_ns)
            self._end_burst()
            self._emit(self._marker(stop_ns, "stop"))
            self._flush()
        except SpoolError as failure:
            self._recorder._fail(RecorderError(f"cannot write to the spool: {failure}"))
        except Exception as failure:
            log.exception("recorder processing failed")
            self._recorder._fail(RecorderError(f"recorder processing failed: {failure!r}"))


class Recorder:
    """Records keyboard, mouse, window focus and frames on one display into a spool.

    ``run(stop)`` blocks until ``stop`` is set (the recorder sets it too, on a fatal error), then
    flushes everything, writes a ``Marker(kind="stop")`` and returns, or raises RecorderError.
    ``on_started`` runs once input capture is live; ``on_stopping`` when the stop begins.
    """

    def __init__(
        self,
        spool: Spool,
        device_id: str,
        *,
        display: str | None = None,
        batch_seconds: float = 1.0,
        batch_max_events: int = 500,
        on_started: Callable[[], None] | None = None,
        on_stopping: Callable[[], None] | None = None,
        gate: CaptureGate | None = None,
        password_probes: Sequence[PasswordProbe] = (),
        scrubber: FrameScrubber | None = None,
    ) -> None:
        self.spool = spool
        self.device_id = device_id
        self.display = display
        self.gate = gate if gate is not None else CaptureGate(DEFAULT_LOCAL_POLICY)
        self.password_probes = tuple(password_probes)
        # OCR redaction of every frame before it is encoded; None: frames are not scrubbed (tests only).
        self.scrubber = scrubber
        self.batch_seconds = batch_seconds
        self.batch_max_events = batch_max_events
        self.session_id = uuid.uuid4().hex
        self._on_started = on_started
        self._on_stopping = on_stopping
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._keyboard_latency = _LatencyRing()
        self._mouse_latency = _LatencyRing()
        self._failure: RecorderError | None = None
        self._failure_lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._stopping = False
        self._grabber: _FrameGrabber | None = None
        self._echo_checker: _EchoChecker | None = None

    # -- the hot path: stamp, enqueue, time ourselves --------------------------------------------

    def _on_move(self, x: int, y: int, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((_MOVE, entered, x, y))
        self._mouse_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_click(self, x: int, y: int, button: Any, pressed: bool, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((_BUTTON, entered, x, y, button, pressed))
        self._mouse_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_scroll(self, x: int, y: int, dx: int, dy: int, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((_SCROLL, entered, x, y, dx, dy))
        self._mouse_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_press(self, key: Any, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((_KEY_DOWN, entered, key))
        self._keyboard_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_release(self, key: Any, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((_KEY_UP, entered, key))
        self._keyboard_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    # -- public ------------------------------------------------------------------------------

    def callback_latency(self) -> LatencyStats:
        """p50/p99/max duration of the input callbacks so far (the most recent 65 536 per listener)."""
        return latency_stats(self._keyboard_latency.values() + self._mouse_latency.values())

    def callback_cpu(self) -> LatencyStats:
        """Like ``callback_latency`` in the listener thread's CPU time: the callbacks' own work."""
        return latency_stats(self._keyboard_latency.cpu_values() + self._mouse_latency.cpu_values())

    def frame_sizes(self) -> list[int]:
        """Encoded bytes of every frame grabbed in this session."""
        return list(self._grabber.frame_bytes) if self._grabber is not None else []

    def scrub_cpu_seconds(self) -> float:
        """CPU time spent on OCR redaction of frames (benchmarks report it apart from the rest)."""
        return self._grabber.scrub_cpu_seconds if self._grabber is not None else 0.0

    def echo_check_cpu_seconds(self) -> float:
        """CPU time of the masked-echo checks (grabs of the typing area and their reading)."""
        return self._echo_checker.cpu_seconds if self._echo_checker is not None else 0.0

    def frames_held(self) -> int:
        return self._grabber.frames_held if self._grabber is not None else 0

    def mark(self, kind: str, text: str = "") -> None:
        """Write a ``Marker(kind, text)`` now, such as ``task_start`` with the task's words or
        ``task_end``. Thread-safe and non-blocking; ``text`` is scrubbed like typed text. Held while
        nothing may be captured (written after that span's marker); dropped while exempt."""
        if not kind:
            raise ValueError("a marker needs a kind, such as 'task_start' or 'task_end'")
        self._events.put_nowait((_MARK, time.perf_counter_ns(), kind, text))

    def _on_gate_changed(self) -> None:
        # Called on whichever thread changed the gate: wake the processing thread, decide nothing here.
        # The state travels with the wake-up: events queued before it are decided under the old one,
        # events after it under this one, however late the processing thread gets to them.
        gate = self.gate
        self._events.put_nowait((_GATE, time.perf_counter_ns(), gate.policy, gate.state))

    def _fail(self, failure: RecorderError) -> None:
        with self._failure_lock:
            if self._failure is None:
                self._failure = failure
        if self._stop is not None:
            self._stop.set()

    def _on_focus(self, info: WindowInfo | None) -> None:
        self._events.put_nowait((_WINDOW, time.perf_counter_ns(), info))

    def _on_focus_error(self, failure: BaseException) -> None:
        if not self._stopping:
            self._fail(RecorderError(f"lost the X connection that follows window focus: {failure!r}"))

    def _start_listeners(self) -> list[Any]:
        with _display_environment(self.display):
            try:
                from pynput import keyboard, mouse
            except ImportError as failure:
                raise RecorderError(f"cannot hook input (pynput): {failure}") from failure
            listeners: list[Any] = [
                keyboard.Listener(on_press=self._on_press, on_release=self._on_release),
                mouse.Listener(on_move=self._on_move, on_click=self._on_click, on_scroll=self._on_scroll),
            ]
            for listener in listeners:
                listener.start()
            ready = [_listener_ready(listener, LISTENER_READY_SECONDS) for listener in listeners]
        if not all(ready):
            _stop_listeners([listener for listener in listeners if listener.is_alive()], self.display)
            raise RecorderError(
                "the input listener stopped right after starting (pynput needs the X RECORD extension "
                "and a reachable display); nothing can be recorded"
            )
        for listener in listeners:
            threading.Thread(
                target=self._watch_listener, args=(listener,), name="demotrace-listener-watch", daemon=True
            ).start()
        return listeners

    def _watch_listener(self, listener: Any) -> None:
        """Block until a listener ends; if we did not stop it, recording is broken: say so and stop."""
        with contextlib.suppress(Exception):
            listener.join()
        if not self._stopping:
            self._fail(RecorderError("the input listener stopped unexpectedly (X server gone?)"))

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        try:
            platform = open_platform(self.display)
        except PlatformError as failure:
            raise RecorderError(str(failure)) from failure
        try:
            self._run_on(platform, stop)
        finally:
            platform.close()
        if self._failure is not None:
            raise self._failure

    def _run_on(self, platform: DesktopPlatform, stop: threading.Event) -> None:
        try:
            platform.check_input_capture()
            layout = platform.screen_layout()
            double_click_ms, double_click_px = platform.double_click()
            window_manager = platform.has_window_manager()
            pointer = platform.pointer_position()
            window = platform.focused_window() if window_manager else platform.window_at_pointer()
        except PlatformError as failure:
            raise RecorderError(str(failure)) from failure
        clock = _Clock(time.perf_counter_ns(), time.time())
        header = SessionHeader(
            session_id=self.session_id,
            device_id=self.device_id,
            platform=platform.name,
            screen_width=layout.width,
            screen_height=layout.height,
            monitors=layout.monitors,
            double_click_ms=double_click_ms,
            double_click_px=double_click_px,
            t=clock.t(clock.start_ns),
            wall=clock.start_wall,
            recorder_version=RECORDER_VERSION,
        )
        grabber = _FrameGrabber(self, layout, clock, platform, self.scrubber)
        self._grabber = grabber
        echo_checker = _EchoChecker(self)
        self._echo_checker = echo_checker

        def accessibility_probe(_window: WindowInfo | None) -> bool | None:
            return platform.password_field_focused()

        # Before the processor takes its first look at the gate, so no change falls in between.
        self.gate.subscribe(self._on_gate_changed)
        processor = _Processor(
            self,
            platform,
            header,
            layout,
            clock,
            grabber,
            follow_pointer_window=not window_manager,
            pointer=pointer,
            window=window,
            password_probes=(accessibility_probe, *self.password_probes),
            echo_checker=echo_checker,
        )
        grabber.start()
        echo_checker.start()
        processor.start()
        watch = None
        listeners: list[Any] = []
        try:
            if window_manager:
                watch = platform.watch_focus(self._on_focus, self._on_focus_error)
            listeners = self._start_listeners()
            if self._on_started is not None:
                self._on_started()
            stop.wait()
        except PlatformError as failure:
            self._fail(RecorderError(str(failure)))
        except RecorderError as failure:
            self._fail(failure)
        finally:
            self._stopping = True
            if self._on_stopping is not None:
                self._on_stopping()
            if listeners and self._failure is None:
                # Input the user gave just before asking to stop may still be on its way from the
                # X server over the RECORD connection: let it arrive.
                time.sleep(STOP_DRAIN_SECONDS)
            _stop_listeners(listeners, self.display)
            if watch is not None:
                watch.stop()
            self._events.put_nowait((_DRAIN,))
            processor.join()
            echo_checker.finish()
            self.gate.unsubscribe(self._on_gate_changed)


def record_until_signal(
    spool: Spool,
    device_id: str,
    *,
    display: str | None = None,
    batch_seconds: float = 1.0,
    batch_max_events: int = 500,
    on_started: Callable[[], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    status: TextIO | None = sys.stderr,
    gate: CaptureGate | None = None,
    on_recorder: Callable[[Recorder], None] | None = None,
    scrubber: FrameScrubber | None = None,
) -> int:
    """Record until SIGINT or SIGTERM; returns the exit code (0 clean stop, 1 error, printed to stderr).

    Writes status lines to ``status``: "demotrace: recording ..." once input capture is live, and the
    input-callback latency when it stops. Must be called from the main thread (signal handlers).
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def started() -> None:
        if status is not None:
            print(f"demotrace: recording {display or os.environ.get('DISPLAY', '')}", file=status, flush=True)
        if on_started is not None:
            on_started()

    recorder = Recorder(
        spool,
        device_id,
        display=display,
        batch_seconds=batch_seconds,
        batch_max_events=batch_max_events,
        on_started=started,
        on_stopping=on_stopping,
        gate=gate,
        scrubber=scrubber,
    )
    if on_recorder is not None:
        on_recorder(recorder)  # e.g. the control socket, which needs recorder.mark for task markers
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        recorder.run(stop)
    except RecorderError as failure:
        print(f"demotrace: {failure}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status is not None:
        latency, cpu = recorder.callback_latency(), recorder.callback_cpu()
        print(
            f"demotrace: {latency.count} input events, callback latency"
            f" p50={latency.p50_ns / 1000:.1f} us p99={latency.p99_ns / 1000:.1f} us;"
            f" own CPU p50={cpu.p50_ns / 1000:.1f} us p99={cpu.p99_ns / 1000:.1f} us",
            file=status,
            flush=True,
        )
        if recorder.scrubber is not None:
            print(
                f"demotrace: screen scrub {recorder.scrub_cpu_seconds():.2f} CPU-s,"
                f" {recorder.frames_held()} frames held for a deferred scrub",
                file=status,
                flush=True,
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m demotrace.capture.recorder``: a bare recorder process (tests, debugging)."""
    parser = argparse.ArgumentParser(prog="python -m demotrace.capture.recorder")
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--device-id", default="local")
    parser.add_argument("--display", default=None)
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--policy", type=Path, default=None, help="capture policy (TOML); default: local")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.policy)
    except PolicyError as failure:
        print(f"demotrace: {failure}", file=sys.stderr)
        return 2
    spool = open_spool(args.spool, args.key_file)
    try:
        return record_until_signal(
            spool,
            args.device_id,
            display=args.display,
            batch_seconds=args.batch_seconds,
            on_started=lambda: print("recording", flush=True),
            gate=CaptureGate(policy),
        )
    finally:
        spool.close()


if __name__ == "__main__":
    sys.exit(main())
