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
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from demotrace.capture import frames as frame_policy
from demotrace.capture import keys as key_names
from demotrace.capture.paths import TimedPoint, relative_path
from demotrace.capture.platform import DesktopPlatform, PlatformError, ScreenLayout, WindowInfo, open_platform
from demotrace.model import (
    Batch,
    Button,
    ButtonName,
    Event,
    Frame,
    FrameTaken,
    Key,
    Marker,
    MovePath,
    Scroll,
    SessionHeader,
    Window,
)
from demotrace.spool import Spool, SpoolError, open_spool

RECORDER_VERSION = "0.1.0"
log = logging.getLogger(__name__)

# Message codes on the event queue (tuples keep the hot path to one allocation).
_MOVE, _BUTTON, _SCROLL, _KEY_DOWN, _KEY_UP, _WINDOW, _FRAME_DONE, _DRAIN = range(8)

# A pointer path is cut after this many raw points (~4 s of motion at 125 Hz): it bounds memory and
# the simplifier's worst case (quadratic in the points of one path).
MAX_RAW_PATH_POINTS = 500
# Frame requests waiting for the grabber; more than this while it is busy are dropped (bursts of clicks).
MAX_PENDING_FRAMES = 4
LATENCY_SAMPLES = 1 << 16  # per listener; a power of two so the ring index is a mask
LISTENER_READY_SECONDS = 10.0
_BUTTON_NAMES: dict[str, ButtonName] = {"left": "left", "right": "right", "middle": "middle"}


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
    """Preallocated ring of callback durations; written by one listener thread only."""

    __slots__ = ("count", "mask", "samples")

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self.samples = array("q", bytes(8 * size))
        self.mask = size - 1
        self.count = 0

    def values(self) -> list[int]:
        return list(self.samples[: min(self.count, self.mask + 1)])


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


class _FrameGrabber:
    """Grabs, encodes and spools frames on its own thread, then reports FrameTaken on the event queue."""

    def __init__(self, recorder: Recorder, layout: ScreenLayout, clock: _Clock) -> None:
        self._recorder = recorder
        self._layout = layout
        self._clock = clock
        self._requests: queue.Queue[tuple[str, int, int, int] | None] = queue.Queue(MAX_PENDING_FRAMES)
        self._thread = threading.Thread(target=self._run, name="demotrace-frames", daemon=True)
        self.frame_bytes: list[int] = []

    def start(self) -> None:
        self._thread.start()

    def request(self, trigger: str, stamp_ns: int, x: int, y: int) -> bool:
        try:
            self._requests.put_nowait((trigger, stamp_ns, x, y))
        except queue.Full:
            return False
        return True

    def finish(self) -> None:
        """Grab what was asked for, then end. Blocks (the queue is short) so no request is lost."""
        self._requests.put(None)
        self._thread.join()

    def _run(self) -> None:
        import mss

        recorder = self._recorder
        screen: Any = None
        try:
            screen = mss.MSS(display=recorder.display)
        except Exception as failure:
            recorder._fail(RecorderError(f"cannot grab the screen: {failure}"))
        try:
            # Every request gets a _FRAME_DONE, even a failed one: the processor counts them.
            while (request := self._requests.get()) is not None:
                taken: FrameTaken | None = None
                try:
                    if screen is not None:
                        taken = self._grab(screen, *request)
                except SpoolError as failure:
                    recorder._fail(RecorderError(f"cannot write a frame to the spool: {failure}"))
                except Exception:
                    log.exception("frame grab failed; the action is recorded without a frame")
                finally:
                    recorder._events.put_nowait((_FRAME_DONE, taken))
        finally:
            if screen is not None:
                screen.close()

    def _grab(self, screen: Any, trigger: str, stamp_ns: int, x: int, y: int) -> FrameTaken:
        recorder = self._recorder
        monitor = frame_policy.monitor_at(self._layout.monitors, x, y)
        grabbed_ns = time.perf_counter_ns()
        encoded = frame_policy.grab_and_encode(screen, monitor)
        frame_id = uuid.uuid4().hex
        recorder.spool.append(
            [
                Frame(
                    frame_id=frame_id,
                    session_id=recorder.session_id,
                    device_id=recorder.device_id,
                    t=self._clock.t(grabbed_ns),
                    wall=self._clock.wall(grabbed_ns),
                    left=monitor.left,
                    top=monitor.top,
                    width=encoded.width,
                    height=encoded.height,
                    media_type=encoded.media_type,
                    data=encoded.data,
                )
            ]
        )
        self.frame_bytes.append(len(encoded.data))
        return FrameTaken(
            t=self._clock.t(stamp_ns),
            wall=self._clock.wall(stamp_ns),
            frame_id=frame_id,
            left=monitor.left,
            top=monitor.top,
            width=encoded.width,
            height=encoded.height,
            trigger=trigger,
            grabbed_t=self._clock.t(grabbed_ns),
        )


class _Processor:
    """Queue → model events → batches. All state here is touched by the processing thread only."""

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
        self._thread = threading.Thread(target=self._run, name="demotrace-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    # -- helpers -------------------------------------------------------------------------------

    def _add(self, event: Event, stamp_ns: int) -> None:
        self._pending.append(event)
        if self._first_unflushed_ns is None:
            self._first_unflushed_ns = stamp_ns

    def _close_path(self) -> None:
        if not self._path:
            return
        ns = self._path_start_ns
        points = relative_path(self._path)
        self._path = []
        self._add(MovePath(t=self._clock.t(ns), wall=self._clock.wall(ns), points=points), ns)

    def _request_frame(self, trigger: str, stamp_ns: int) -> None:
        x, y = self._pointer
        if self._grabber.request(trigger, stamp_ns, x, y):
            self._frames_in_flight += 1

    def _note_window(self, info: WindowInfo | None, stamp_ns: int) -> None:
        identity = (0, "") if info is None else (info.window_id, info.title)
        if identity == self._last_window:
            return
        self._last_window = identity
        self._add(
            _window_event(info, self._layout, self._clock.t(stamp_ns), self._clock.wall(stamp_ns)), stamp_ns
        )

    def _decide_frame(self, kind: frame_policy.InputKind, stamp_ns: int, **facts: Any) -> None:
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

    # -- one message ---------------------------------------------------------------------------

    def _handle(self, message: tuple[Any, ...]) -> None:
        code = message[0]
        clock = self._clock
        if code == _MOVE:
            _, ns, x, y = message
            self._pointer = (x, y)
            if not self._path:
                self._path_start_ns = ns
                if self._first_unflushed_ns is None:
                    self._first_unflushed_ns = ns
            self._path.append((x, y, ns / 1e9))
            if len(self._path) >= MAX_RAW_PATH_POINTS:
                self._close_path()
            return
        if code == _FRAME_DONE:
            self._frames_in_flight -= 1
            taken: FrameTaken | None = message[1]
            if taken is not None:
                self._add(taken, int(taken.t * 1e9))
            return
        if code == _WINDOW:
            _, ns, info = message
            self._note_window(info, ns)
            return
        self._close_path()
        t_of = clock.t
        wall_of = clock.wall
        if code == _BUTTON:
            _, ns, x, y, button, pressed = message
            self._pointer = (x, y)
            name = _BUTTON_NAMES.get(getattr(button, "name", ""))
            if name is None:
                return  # back/forward and other extra buttons have no place in the action vocabulary
            if pressed:
                if self._follow_pointer_window:
                    self._note_window(self._platform.window_at_pointer(), ns)
                self._decide_frame("button_down", ns, x=x, y=y, button=name)
            else:
                self._decide_frame("button_up", ns)
            self._add(Button(t=t_of(ns), wall=wall_of(ns), down=bool(pressed), button=name, x=x, y=y), ns)
        elif code == _SCROLL:
            _, ns, x, y, dx, dy = message
            self._pointer = (x, y)
            self._decide_frame("scroll", ns)
            self._add(Scroll(t=t_of(ns), wall=wall_of(ns), x=x, y=y, dx=dx, dy=dy), ns)
        elif code in (_KEY_DOWN, _KEY_UP):
            _, ns, pynput_key = message
            down = code == _KEY_DOWN
            info = key_names.describe_key(key_names.raw_key_of(pynput_key))
            modifiers = key_names.modifiers_held(self._held, excluding=info.key)
            self._held = key_names.press_modifiers(self._held, info.key, down)
            if down:
                is_modifier = info.key in key_names.MODIFIER_OF_KEY
                self._decide_frame(
                    "modifier_down" if is_modifier else "key_down",
                    ns,
                    hotkey=key_names.is_hotkey(info.key, modifiers),
                )
            self._add(
                Key(
                    t=t_of(ns),
                    wall=wall_of(ns),
                    down=down,
                    key=info.key,
                    keysym=info.keysym,
                    char=key_names.typed_char(info, modifiers, down),
                    modifiers=modifiers,
                ),
                ns,
            )

    # -- batching ------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._close_path()
        if not self._pending and self._header is None:
            return
        # A frame shares its trigger's t and must come first: it shows the screen before the action.
        events = sorted(self._pending, key=lambda event: (event.t, not isinstance(event, FrameTaken)))
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
        self._pending = []
        self._first_unflushed_ns = None

    def _due(self, now_ns: int) -> bool:
        if self._first_unflushed_ns is None:
            return False
        size = len(self._pending) + (1 if self._path else 0)
        return size >= self._recorder.batch_max_events or (
            now_ns - self._first_unflushed_ns >= self._recorder.batch_seconds * 1e9
        )

    def _wait_timeout(self) -> float | None:
        """Seconds to wait for a message; None (no wake-up) if nothing is unflushed or a frame is awaited."""
        if self._first_unflushed_ns is None:
            return None
        remaining = self._first_unflushed_ns / 1e9 + self._recorder.batch_seconds - time.perf_counter()
        if remaining <= 0 and self._frames_in_flight > 0:
            return None  # hold the batch until the frame's FrameTaken arrives, so t stays ordered
        return max(remaining, 0.0)

    def _run(self) -> None:
        events = self._recorder._events
        draining = False
        try:
            start_ns = self._clock.start_ns
            if self._follow_pointer_window:
                self._note_window(self._platform.window_at_pointer(), start_ns)
            self._request_frame("start", start_ns)
            while True:
                timeout = self._wait_timeout()
                try:
                    message = events.get() if timeout is None else events.get(timeout=timeout)
                except queue.Empty:
                    message = None
                if message is not None:
                    if message[0] == _DRAIN:
                        draining = True
                        self._grabber.finish()  # every requested frame is now on the queue
                    else:
                        self._handle(message)
                if draining and self._frames_in_flight == 0 and events.empty():
                    break
                if self._frames_in_flight == 0 and self._due(time.perf_counter_ns()):
                    self._flush()
            stop_ns = time.perf_counter_ns()
            self._close_path()
            self._add(Marker(t=self._clock.t(stop_ns), wall=self._clock.wall(stop_ns), kind="stop"), stop_ns)
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
    ) -> None:
        self.spool = spool
        self.device_id = device_id
        self.display = display
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

    # -- the hot path: stamp, enqueue, time ourselves --------------------------------------------

    def _on_move(self, x: int, y: int, injected: bool = False) -> None:
        entered = time.perf_counter_ns()
        self._events.put_nowait((_MOVE, entered, x, y))
        ring = self._mouse_latency
        ring.samples[ring.count & ring.mask] = time.perf_counter_ns() - entered
        ring.count += 1

    def _on_click(self, x: int, y: int, button: Any, pressed: bool, injected: bool = False) -> None:
        entered = time.perf_counter_ns()
        self._events.put_nowait((_BUTTON, entered, x, y, button, pressed))
        ring = self._mouse_latency
        ring.samples[ring.count & ring.mask] = time.perf_counter_ns() - entered
        ring.count += 1

    def _on_scroll(self, x: int, y: int, dx: int, dy: int, injected: bool = False) -> None:
        entered = time.perf_counter_ns()
        self._events.put_nowait((_SCROLL, entered, x, y, dx, dy))
        ring = self._mouse_latency
        ring.samples[ring.count & ring.mask] = time.perf_counter_ns() - entered
        ring.count += 1

    def _on_press(self, key: Any, injected: bool = False) -> None:
        entered = time.perf_counter_ns()
        self._events.put_nowait((_KEY_DOWN, entered, key))
        ring = self._keyboard_latency
        ring.samples[ring.count & ring.mask] = time.perf_counter_ns() - entered
        ring.count += 1

    def _on_release(self, key: Any, injected: bool = False) -> None:
        entered = time.perf_counter_ns()
        self._events.put_nowait((_KEY_UP, entered, key))
        ring = self._keyboard_latency
        ring.samples[ring.count & ring.mask] = time.perf_counter_ns() - entered
        ring.count += 1

    # -- public ------------------------------------------------------------------------------

    def callback_latency(self) -> LatencyStats:
        """p50/p99/max duration of the input callbacks so far (the most recent 65 536 per listener)."""
        return latency_stats(self._keyboard_latency.values() + self._mouse_latency.values())

    def frame_sizes(self) -> list[int]:
        """Encoded bytes of every frame grabbed in this session."""
        return list(self._grabber.frame_bytes) if self._grabber is not None else []

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
        grabber = _FrameGrabber(self, layout, clock)
        self._grabber = grabber
        processor = _Processor(
            self,
            platform,
            header,
            layout,
            clock,
            grabber,
            follow_pointer_window=not window_manager,
            pointer=pointer,
        )
        grabber.start()
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
            _stop_listeners(listeners, self.display)
            if watch is not None:
                watch.stop()
            self._events.put_nowait((_DRAIN,))
            processor.join()


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
    )
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
        latency = recorder.callback_latency()
        print(
            f"demotrace: {latency.count} input events, callback latency"
            f" p50={latency.p50_ns / 1000:.1f} us p99={latency.p99_ns / 1000:.1f} us",
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
    args = parser.parse_args(argv)
    spool = open_spool(args.spool, args.key_file)
    try:
        return record_until_signal(
            spool,
            args.device_id,
            display=args.display,
            batch_seconds=args.batch_seconds,
            on_started=lambda: print("recording", flush=True),
        )
    finally:
        spool.close()


if __name__ == "__main__":
    sys.exit(main())
