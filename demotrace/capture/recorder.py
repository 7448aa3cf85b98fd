"""The recorder: input hooks -> event queue -> processing thread -> sink batches; frames on their own threads.

Threads, and what each one sleeps on (nothing wakes up while the user is idle):

- pynput keyboard and mouse listeners (X RECORD): the callbacks are the hot path. They read the
  clock, ``put_nowait`` one plain tuple (a message's class and fields; :mod:`~demotrace.capture.messages`)
  on a SimpleQueue and time themselves; nothing else.
- processing (:mod:`~demotrace.capture.processor`): turns queued messages into model events, keeps the
  pointer path, decides frames and commits batches; every privacy rule applies there, in memory, before
  anything is written (:mod:`~demotrace.capture.gate_spans`, :mod:`~demotrace.capture.password`).
- frames (:mod:`~demotrace.capture.frame_pipeline`): grab, OCR scrub and encode the monitor under the
  pointer when asked; each waits on its request queue.
- masked echo (:mod:`~demotrace.capture.echo_checker`): looks at the area where typing lands when asked.
- focus watch (window manager present): sleeps in select() on its own X connection.
- the caller's thread: ``run`` waits on the caller's stop event.

Times: ``t`` is ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux); ``wall`` is derived from it and a
wall-clock reading taken at start, so the two never disagree about order.

Writing: through the sink it is handed (:class:`~demotrace.capture.sink.RecordSink`, the device's
spool). Uploading is not the recorder's business: pass ``on_started``/``on_stopping`` to start and stop an
uploader around the recording (it can sleep on ``spool.committed``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

from demotrace.capture.browser_bridge import BrowserBridge
from demotrace.capture.browser_pages import BrowserReport
from demotrace.capture.echo_checker import EchoChecker
from demotrace.capture.frame_pipeline import FramePipeline, FrameStream
from demotrace.capture.latency import LatencyRing, LatencyStats, latency_stats
from demotrace.capture.messages import (
    BrowserReported,
    ButtonChanged,
    Clock,
    Drain,
    FocusChanged,
    GateChanged,
    KeyChanged,
    PointerMoved,
    Queued,
    Scrolled,
    TaskMarked,
)
from demotrace.capture.password import PasswordProbe
from demotrace.capture.platform import DesktopPlatform, PlatformError, WindowInfo, open_platform
from demotrace.capture.processor import Processor
from demotrace.capture.scrub import FrameScrubber
from demotrace.capture.sink import RecordSink
from demotrace.model import SessionHeader
from demotrace.policy import DEFAULT_LOCAL_POLICY, CaptureGate
from demotrace.wording import plural

RECORDER_VERSION = "0.1.0"
STOP_DRAIN_SECONDS = 0.3
LISTENER_READY_SECONDS = 10.0


class RecorderError(Exception):
    """Recording cannot start or continue; the message says why and what to do."""


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


class Recorder:
    """Records keyboard, mouse, window focus and frames on one display into a sink (the spool).

    ``run(stop)`` blocks until ``stop`` is set (the recorder sets it too, on a fatal error), then
    flushes everything, writes a ``Marker(kind="stop")`` and returns, or raises RecorderError.
    ``on_started`` runs once input capture is live; ``on_stopping`` when the stop begins.
    """

    def __init__(
        self,
        sink: RecordSink,
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
        browser: BrowserBridge | None = None,
    ) -> None:
        self.sink = sink
        self.device_id = device_id
        self.display = display
        self.gate = gate if gate is not None else CaptureGate(DEFAULT_LOCAL_POLICY)
        self.password_probes = tuple(password_probes)
        # OCR redaction of every frame before it is encoded; None: frames are not scrubbed (tests only).
        self.scrubber = scrubber
        # The browser extension's reports (pages and elements); None: browsers are known by title only.
        self.browser = browser
        self.batch_seconds = batch_seconds
        self.batch_max_events = batch_max_events
        self.session_id = uuid.uuid4().hex
        self._on_started = on_started
        self._on_stopping = on_stopping
        self._events: queue.SimpleQueue[Queued] = queue.SimpleQueue()
        self._keyboard_latency = LatencyRing()
        self._mouse_latency = LatencyRing()
        self._failure: RecorderError | None = None
        self._failure_lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._stopping = False
        self._frames: FramePipeline | None = None
        self._echo_checker: EchoChecker | None = None

    # -- the hot path: stamp, enqueue, time ourselves --------------------------------------------

    def _on_move(self, x: int, y: int, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((PointerMoved, entered, x, y))
        self._mouse_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_click(self, x: int, y: int, button: Any, pressed: bool, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((ButtonChanged, entered, x, y, button, pressed))
        self._mouse_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_scroll(self, x: int, y: int, dx: int, dy: int, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((Scrolled, entered, x, y, dx, dy))
        self._mouse_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_press(self, key: Any, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((KeyChanged, entered, key, True))
        self._keyboard_latency.add(time.perf_counter_ns() - entered, time.thread_time_ns() - started)

    def _on_release(self, key: Any, injected: bool = False) -> None:
        entered, started = time.perf_counter_ns(), time.thread_time_ns()
        self._events.put_nowait((KeyChanged, entered, key, False))
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
        return list(self._frames.frame_bytes) if self._frames is not None else []

    def scrub_cpu_seconds(self) -> float:
        """CPU time spent on OCR redaction of frames (benchmarks report it apart from the rest)."""
        return self._frames.scrub_cpu_seconds if self._frames is not None else 0.0

    def echo_check_cpu_seconds(self) -> float:
        """CPU time of the masked-echo checks (grabs of the typing area and their reading)."""
        return self._echo_checker.cpu_seconds if self._echo_checker is not None else 0.0

    def frames_held(self) -> int:
        return self._frames.frames_held if self._frames is not None else 0

    def grab_waits(self) -> tuple[int, float]:
        """Grabs that waited for a frame in flight to be encoded (bursts), and the seconds they waited."""
        frames = self._frames
        return (frames.grabs_waited, frames.seconds_waited) if frames is not None else (0, 0.0)

    def mark(self, kind: str, text: str = "") -> None:
        """Write a ``Marker(kind, text)`` now, such as ``task_start`` with the task's words or
        ``task_end``. Thread-safe and non-blocking; ``text`` is scrubbed like typed text. Held while
        nothing may be captured (written after that span's marker); dropped while exempt."""
        if not kind:
            raise ValueError("a marker needs a kind, such as 'task_start' or 'task_end'")
        self._events.put_nowait(TaskMarked(time.perf_counter_ns(), kind, text))

    def _on_gate_changed(self) -> None:
        # Called on whichever thread changed the gate: wake the processing thread, decide nothing here.
        # The state travels with the wake-up: events queued before it are decided under the old one,
        # events after it under this one, however late the processing thread gets to them.
        gate = self.gate
        self._events.put_nowait(GateChanged(time.perf_counter_ns(), gate.policy, gate.state))

    def _on_browser_report(self, pid: int, report: BrowserReport | None) -> None:
        # On the bridge's connection thread: queue it, decide nothing here.
        self._events.put_nowait(BrowserReported(time.perf_counter_ns(), pid, report))

    def _fail(self, failure: RecorderError) -> None:
        with self._failure_lock:
            if self._failure is None:
                self._failure = failure
        if self._stop is not None:
            self._stop.set()

    def _fail_with(self, message: str) -> None:
        """For the worker threads: recording cannot go on, for this reason."""
        self._fail(RecorderError(message))

    def _on_focus(self, info: WindowInfo | None) -> None:
        self._events.put_nowait(FocusChanged(time.perf_counter_ns(), info))

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
        clock = Clock(time.perf_counter_ns(), time.time())
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
        post = self._events.put_nowait
        stream = FrameStream(self.sink, self.session_id, self.device_id, clock, post, self._fail_with)
        frames = FramePipeline(
            stream, layout, platform, self.gate, self.display, self.scrubber, browser=self.browser
        )
        self._frames = frames
        echo_checker = EchoChecker(self.display, post)
        self._echo_checker = echo_checker

        def accessibility_probe(_window: WindowInfo | None) -> bool | None:
            return platform.password_field_focused()

        # Before the processor takes its first look at the gate, so no change falls in between.
        self.gate.subscribe(self._on_gate_changed)
        pages = self.browser.subscribe(self._on_browser_report) if self.browser is not None else None
        processor = Processor(
            self._events,
            self.sink,
            header,
            layout,
            clock,
            self.gate,
            frames,
            window_at=platform.window_at,
            follow_pointer_window=not window_manager,
            pointer=pointer,
            window=window,
            password_probes=(accessibility_probe, *self.password_probes),
            look=echo_checker.look,
            pages=pages,
            visible_windows=platform.visible_windows,
            batch_seconds=self.batch_seconds,
            batch_max_events=self.batch_max_events,
            fail=self._fail_with,
        )
        frames.start()
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
            self._events.put_nowait(Drain())
            processor.join()
            echo_checker.finish()
            self.gate.unsubscribe(self._on_gate_changed)
            if self.browser is not None:
                self.browser.subscribe(None)


def record_until_signal(
    sink: RecordSink,
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
    browser: BrowserBridge | None = None,
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
        sink,
        device_id,
        display=display,
        batch_seconds=batch_seconds,
        batch_max_events=batch_max_events,
        on_started=started,
        on_stopping=on_stopping,
        gate=gate,
        scrubber=scrubber,
        browser=browser,
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
                f" {plural(recorder.frames_held(), 'frame')} held for a deferred scrub;"
                f" {plural(recorder.grab_waits()[0], 'grab')} waited {recorder.grab_waits()[1]:.2f} s"
                " for a frame buffer",
                file=status,
                flush=True,
            )
    return 0
