"""Frames, one direction: grab -> blackout -> OCR scrub -> encode -> sink, then FrameTaken on the event queue.

Frames are grabbed on one thread (at once: the frame must show the screen before the action), scrubbed
(OCR redaction) on a second and encoded and written on a third. OCR takes a second or more: it must never
delay the next grab, and encoding need not wait for the next frame's OCR. The OCR thread's CPU is the
screen safeguard's cost, reported apart from the recorder's own (its OS thread name is "dt-ocr").

Privacy: every window the policy does not allow is painted black in the grabbed pixels (``blackout``),
respecting the stacking order, before the frame is scrubbed and encoded; browser windows are decided
by the page the browser extension reports, and a password or card field with focus is covered too.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from demotrace.capture.blackout import black_boxes
from demotrace.capture.browser_bridge import BrowserBridge
from demotrace.capture.gate_spans import window_context
from demotrace.capture.grab import MOST_FRAMES_IN_FLIGHT, FrameBuffers, grab_pixels
from demotrace.capture.messages import Clock, FrameDone, Message
from demotrace.capture.platform import DesktopPlatform, ScreenLayout
from demotrace.capture.scrub import FrameScrubber
from demotrace.capture.sink import RecordDropped, RecordSink, SinkError
from demotrace.capture.triggers import monitor_at
from demotrace.frames.encoder import FrameEncoder, encode_held
from demotrace.frames.pixels import ScreenPixels
from demotrace.frames.settings import PowerState, choose_encoding
from demotrace.geometry import Box
from demotrace.memory import give_back_free_heap
from demotrace.model import FrameTaken, Monitor
from demotrace.policy import CaptureGate, decide, decide_device
from demotrace.redact.ocr import OcrError
from demotrace.redact.paint import blackout_pixels
from demotrace.threads import name_os_thread

log = logging.getLogger(__name__)

# Frame requests waiting for the grabber; more than this while it is busy are dropped (bursts of clicks).
MAX_PENDING_FRAMES = 4
# Grabbed images waiting for OCR, and scrubbed ones waiting for the encoder (6 MB each at 1080p).
MAX_PENDING_IMAGES = 1


class _CaptureNotAllowed(Exception):
    """The screen may no longer be captured (a pause or exemption began after the frame was asked for)."""


class PolicyScreen:
    """Grabs that show only what the policy allows (the only way the frame thread reads the screen).

    The windows are listed before and after the grab and the union of both blackouts is painted, so a
    window that moved or was raised during the grab is black wherever it may have been.
    """

    def __init__(
        self, screen: Any, platform: DesktopPlatform, gate: CaptureGate, browser: BrowserBridge | None = None
    ) -> None:
        self._screen = screen
        self._platform = platform
        self._gate = gate
        self._browser = browser
        self._buffers = FrameBuffers(most=MOST_FRAMES_IN_FLIGHT)

    def wait_for_room(self) -> float:
        """Wait until a frame may be grabbed without passing the cap on frames in flight (a burst);
        returns the seconds waited."""
        return self._buffers.wait_for_room()

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
        browser = self._browser
        for windows in [before] if after == before else [before, after]:
            contexts = browser.contexts(windows, policy) if browser else [window_context(w) for w in windows]
            stacked = [
                (w, decide(policy, context, state, now)) for w, context in zip(windows, contexts, strict=True)
            ]
            fields = browser.sensitive_boxes(windows) if browser else []
            left, top = monitor.left, monitor.top
            covered = black_boxes(monitor, stacked) + [
                Box(b.left - left, b.top - top, b.right - left, b.bottom - top) for b in fields
            ]
            boxes = [
                Box(
                    math.floor(b.left * scale_x),
                    math.floor(b.top * scale_y),
                    math.ceil(b.right * scale_x),
                    math.ceil(b.bottom * scale_y),
                )
                for b in covered
            ]
            blackout_pixels(pixels, boxes)
        return pixels

    def close(self) -> None:
        self._buffers.clear()
        self._screen.close()


@dataclass(frozen=True, slots=True)
class _FrameRequest:
    trigger: str
    stamp_ns: int
    x: int
    y: int
    window_id: int  # the focused window when the action started: the grab may come later


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


@dataclass(frozen=True)
class FrameStream:
    """Where the frames of one session go and whom they concern."""

    sink: RecordSink
    session_id: str
    device_id: str
    clock: Clock
    post: Callable[[Message], None]  # FrameDone onto the processor's queue
    fail: Callable[[str], None]  # a fatal error: the recording stops with this message


class FramePipeline:
    """The grab, OCR and encode threads; ``request`` is called by the processing thread, and every
    request is answered with one ``FrameDone`` through ``stream.post``."""

    def __init__(
        self,
        stream: FrameStream,
        layout: ScreenLayout,
        platform: DesktopPlatform,
        gate: CaptureGate,
        display: str | None,
        scrubber: FrameScrubber | None = None,
        *,
        browser: BrowserBridge | None = None,
    ) -> None:
        self._stream = stream
        self._browser = browser
        self._layout = layout
        self._platform = platform
        self._gate = gate
        self._display = display
        self._requests: queue.Queue[_FrameRequest | None] = queue.Queue(MAX_PENDING_FRAMES)
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
        self.frames_dropped = 0
        self.grabs_waited = 0  # for a frame buffer, in bursts (see grab.MOST_FRAMES_IN_FLIGHT)
        self.seconds_waited = 0.0
        self._encoded_window_id: int | None = None  # a change of window makes the next frame a key

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def request(self, trigger: str, stamp_ns: int, x: int, y: int, window_id: int) -> bool:
        try:
            self._requests.put_nowait(_FrameRequest(trigger, stamp_ns, x, y, window_id))
        except queue.Full:
            return False
        return True

    def finish(self) -> None:
        """Grab, scrub and encode what was asked for, then end. Blocks so no request is lost."""
        self._requests.put(None)
        for thread in self._threads:
            thread.join()

    def _done(self, taken: FrameTaken | None) -> None:
        self._stream.post(FrameDone(taken))

    def _run(self) -> None:
        import mss

        name_os_thread()
        screen: PolicyScreen | None = None
        try:
            screen = PolicyScreen(mss.MSS(display=self._display), self._platform, self._gate, self._browser)
        except Exception as failure:
            self._stream.fail(f"cannot grab the screen: {failure}")
        try:
            # Every request gets a FrameDone, even a failed one: the processor counts them.
            while (request := self._requests.get()) is not None:
                grabbed: _Grabbed | None = None
                try:
                    if screen is not None:
                        grabbed = self._grab(screen, request)
                except _CaptureNotAllowed:
                    pass  # the screen went out of bounds between the request and the grab
                except Exception:
                    log.exception("frame grab failed; the action is recorded without a frame")
                if grabbed is None:
                    self._done(None)
                else:
                    self._grabbed.put(grabbed)
                # A frame's buffer goes back to the grab pool when its last holder lets go: a loop variable
                # left bound while the thread waits for the next item would hold it (one 8 MB buffer per
                # stage, measured: three resident where two are in flight).
                del grabbed
        finally:
            self._grabbed.put(None)
            if screen is not None:
                screen.close()

    def _grab(self, screen: PolicyScreen, request: _FrameRequest) -> _Grabbed:
        monitor = monitor_at(self._layout.monitors, request.x, request.y)
        waited = screen.wait_for_room()  # before the time of the grab is taken: the frame says when it shows
        if waited > 0.001:
            self.grabs_waited += 1
            self.seconds_waited += waited
        grabbed_ns = time.perf_counter_ns()
        pixels = screen.grab_pixels(monitor)
        return _Grabbed(pixels, monitor, grabbed_ns, request.trigger, request.stamp_ns, request.window_id)

    def _run_scrub(self) -> None:
        name_os_thread()
        scrubber = self._scrubber
        assert scrubber is not None
        try:
            while (grabbed := self._grabbed.get()) is not None:
                self._scrub_and_pass_on(scrubber, grabbed)
                del grabbed  # not held while waiting for the next frame (see _run)
        finally:
            self._scrubbed.put(None)

    def _scrub_and_pass_on(self, scrubber: FrameScrubber, grabbed: _Grabbed) -> None:
        try:
            self._scrub(scrubber, grabbed)
        except OcrError as failure:
            # No frame rather than an unscrubbed one.
            log.error("screen scrub failed, the frame is dropped: %s", failure)
            self._done(None)
            return
        except Exception:
            log.exception("screen scrub failed, the frame is dropped")
            self._done(None)
            return
        self._scrubbed.put(grabbed)

    def _scrub(self, scrubber: FrameScrubber, grabbed: _Grabbed) -> None:
        state, policy = self._gate.state, self._gate.policy
        if state.on_battery and policy.defer_ocr_on_battery:
            # Scrubbed later, on mains power; until then it is never offered for upload.
            grabbed.held = True
            return
        started = time.thread_time()
        scrubber.cover(grabbed.pixels, grabbed.monitor)
        self.scrub_cpu_seconds += time.thread_time() - started

    def _run_encode(self) -> None:
        name_os_thread()
        while (grabbed := self._scrubbed.get()) is not None:
            taken: FrameTaken | None = None
            try:
                taken = self._encode(grabbed)
            except RecordDropped as dropped:
                # No room (spool quota, full disk): the action is kept without its frame; the sink
                # counts the drop and the agent reports it.
                self.frames_dropped += 1
                if self.frames_dropped == 1 or self.frames_dropped % 100 == 0:
                    log.warning("%s (%d frames so far)", dropped, self.frames_dropped)
            except SinkError as failure:
                self._stream.fail(f"cannot write a frame to the spool: {failure}")
            except Exception:
                log.exception("frame encoding failed; the action is recorded without a frame")
            finally:
                self._done(taken)
            del grabbed  # not held while waiting for the next frame (see _run)
            # The frame's temporaries (encoded bytes, tiles, records) are freed by now: their holes in
            # the heap go back to the system instead of staying resident (see memory.py).
            give_back_free_heap()

    def _encoding_for_power(self) -> None:
        """Encoder settings follow the power state (cheaper effort on battery); a change starts a chain."""
        state = self._gate.state
        power = PowerState(on_battery=state.on_battery, battery_percent=state.battery_percent)
        if power != self._power:
            self._power = power
            self._encoder.settings = choose_encoding(power)

    def _encode(self, grabbed: _Grabbed) -> FrameTaken:
        stream, clock = self._stream, self._stream.clock
        pixels, monitor, held = grabbed.pixels, grabbed.monitor, grabbed.held
        self._encoding_for_power()
        # Held frames are self-contained (the scrub worker rewrites them whole, so no delta may refer
        # to one): a quick whole PNG, and the chain starts again after it. The encoder's settings decide
        # whether a window switch makes a key frame.
        switched = grabbed.window_id != self._encoded_window_id
        if held:
            encoded = encode_held(pixels)
            self._encoder.reset()
        else:
            encoded = self._encoder.encode(pixels, monitor, key=switched)
        self._encoded_window_id = grabbed.window_id
        frame = encoded.to_frame(
            session_id=stream.session_id,
            device_id=stream.device_id,
            t=clock.t(grabbed.grabbed_ns),
            wall=clock.wall(grabbed.grabbed_ns),
            left=monitor.left,
            top=monitor.top,
        )
        try:
            stream.sink.append([frame], held=held)
        except BaseException:
            self._encoder.reset()  # no later frame may refer to one that was never stored
            raise
        self.frames_held += held
        self.frame_bytes.append(len(encoded.data))
        return FrameTaken(
            t=clock.t(grabbed.stamp_ns),
            wall=clock.wall(grabbed.stamp_ns),
            frame_id=encoded.frame_id,
            left=monitor.left,
            top=monitor.top,
            width=encoded.width,
            height=encoded.height,
            trigger=grabbed.trigger,
            grabbed_t=clock.t(grabbed.grabbed_ns),
        )
