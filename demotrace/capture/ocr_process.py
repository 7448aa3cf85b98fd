"""Screen OCR in a worker process of its own, so the recorder stays small and steady.

Reading a frame takes OCR canvases, upscaled strips and several frame-sized copies; in the recorder's
own process that working set stayed resident (~80 MB more, creeping up over a session: measured
with bench/record.py). Here the recorder keeps only its capture buffers, and the OCR working set lives
in a worker that also runs at a lower CPU priority, dies with the recorder, and is restarted after a
failure (a crash loses no frame unscrubbed: that frame is dropped, as for any OCR error).

Protocol over the worker's stdin/stdout (anonymous pipes, never a file): a 4-byte length and a
MessagePack ``OcrRequest``, then the raw pixels for a scrub (RGB, or the grab's own BGRX bytes); the
answer is a 4-byte length and an ``OcrReply`` with the boxes to paint. The recorder paints them itself,
so the pixels travel one way and the recorder makes no copy of them.

    python -m demotrace.capture.ocr_process      # what the recorder starts; not for people
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import time
from typing import IO, Literal

import msgspec
from PIL import Image

from demotrace.capture.scrub import FrameScrubber
from demotrace.frames.pixels import ScreenPixels
from demotrace.geometry import Box
from demotrace.model import Monitor
from demotrace.redact.ocr import OcrError, OcrSettings
from demotrace.redact.paint import blackout_image, blackout_pixels
from demotrace.redact.scrubber import ScrubResult

_LENGTH = struct.Struct("<I")
# A request header or reply is small; anything bigger is a broken stream, not a message.
MAX_MESSAGE_BYTES = 1 << 20
WORKER_NICENESS = 10
_PR_SET_PDEATHSIG = 1

BoxTuple = tuple[int, int, int, int]


class OcrRequest(msgspec.Struct, tag=True):
    op: Literal["scrub", "forget"]
    monitor: BoxTuple = (0, 0, 0, 0)  # left, top, width, height
    width: int = 0
    height: int = 0
    pixel_bytes: int = 0  # raw pixel bytes that follow the header
    layout: Literal["RGB", "BGRX"] = "RGB"  # BGRX: a grab's own bytes, 4 per pixel


class OcrReply(msgspec.Struct):
    boxes: list[BoxTuple] = []
    regions: list[BoxTuple] = []
    ocr_seconds: float = 0.0
    error: str = ""


def _write_message(
    stream: IO[bytes], message: msgspec.Struct, payload: bytes | bytearray | memoryview = b""
) -> None:
    header = msgspec.msgpack.encode(message)
    stream.write(_LENGTH.pack(len(header)))
    stream.write(header)
    if payload:
        stream.write(payload)
    stream.flush()


def _read_exactly(stream: IO[bytes], count: int) -> bytes:
    data = stream.read(count)
    if data is None or len(data) != count:
        raise EOFError(f"stream ended after {0 if data is None else len(data)} of {count} bytes")
    return data


def _read_message(stream: IO[bytes], kind: type[OcrRequest] | type[OcrReply]) -> OcrRequest | OcrReply:
    (length,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
    if length > MAX_MESSAGE_BYTES:
        raise EOFError(f"a {length}-byte message is not part of this protocol")
    return msgspec.msgpack.decode(_read_exactly(stream, length), type=kind)


class OcrProcessScrubber(FrameScrubber):
    """A FrameScrubber whose reading happens in a worker process (started on first use). Uses the
    default screen detectors; thread-safe like its parent (one frame at a time). A frame with nothing
    to cover comes back as the very image given (callers must not change it afterwards)."""

    def __init__(self, settings: OcrSettings | None = None) -> None:
        super().__init__(settings=settings)
        self._worker: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker is not None and self._worker.poll() is None else None

    def _ensure_worker(self) -> subprocess.Popen[bytes]:
        worker = self._worker
        if worker is not None and worker.poll() is None:
            return worker
        if worker is not None:
            self.restarts += 1
        settings = msgspec.json.encode(self.settings).decode()
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "demotrace.capture.ocr_process", settings],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # its warnings go where the recorder's go
        )
        return self._worker

    def _ask(self, request: OcrRequest, payload: bytes | bytearray | memoryview = b"") -> OcrReply:
        worker = self._ensure_worker()
        assert worker.stdin is not None and worker.stdout is not None
        try:
            _write_message(worker.stdin, request, payload)
            reply = _read_message(worker.stdout, OcrReply)
        except (OSError, EOFError, msgspec.DecodeError) as error:
            self._stop_worker()  # whatever state it had is gone; the next frame starts a new one
            raise OcrError(f"the OCR worker failed ({error}); it is restarted for the next frame") from error
        assert isinstance(reply, OcrReply)
        if reply.error:
            raise OcrError(reply.error)
        return reply

    @staticmethod
    def _box_of(monitor: Monitor | None, size: tuple[int, int]) -> BoxTuple:
        if monitor is None:
            return (0, 0, *size)
        return (monitor.left, monitor.top, monitor.width, monitor.height)

    def scrub_result(self, image: Image.Image, monitor: Monitor | None = None) -> ScrubResult:
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = image.tobytes()
        request = OcrRequest(
            "scrub", self._box_of(monitor, image.size), image.width, image.height, len(pixels)
        )
        with self._lock:
            reply = self._ask(request, pixels)
        boxes = [Box(*found) for found in reply.boxes]
        # Most frames hold nothing sensitive: they pass as they are, without a frame-sized copy.
        scrubbed = blackout_image(image, boxes) if boxes else image
        return ScrubResult(scrubbed, boxes, reply.ocr_seconds, [Box(*r) for r in reply.regions])

    def cover(self, pixels: ScreenPixels, monitor: Monitor | None = None) -> list[Box]:
        # The grab's bytes go to the worker as they are: no RGB copy on the recorder's side.
        request = OcrRequest(
            "scrub", self._box_of(monitor, pixels.size), pixels.width, pixels.height, len(pixels.data), "BGRX"
        )
        with self._lock:
            reply = self._ask(request, pixels.data)
        boxes = [Box(*found) for found in reply.boxes]
        if boxes:
            blackout_pixels(pixels, boxes)
        return boxes

    def forget(self) -> None:
        with self._lock:
            if self.worker_pid is not None:
                with contextlib.suppress(OcrError):  # a dead worker remembers nothing either
                    self._ask(OcrRequest("forget"))

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        for stream in (worker.stdin, worker.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            worker.wait(timeout=5)  # it ends at the end of its input
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def close(self) -> None:
        with self._lock:
            self._stop_worker()


# -- the worker ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to end this worker if the recorder dies (a SIGKILL leaves no time to close pipes)."""
    from demotrace.threads import libc_prctl

    prctl = libc_prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def serve(settings: OcrSettings, requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until the input ends."""
    scrubber = FrameScrubber(settings=settings)
    while True:
        try:
            request = _read_message(requests, OcrRequest)
        except EOFError:
            return
        assert isinstance(request, OcrRequest)
        if request.op == "forget":
            scrubber.forget()
            _write_message(replies, OcrReply())
            continue
        try:
            pixels = _read_exactly(requests, request.pixel_bytes)
        except EOFError:
            return  # the recorder died while sending (SIGKILL): nobody is left to answer, nor to tell
        try:
            size = (request.width, request.height)
            if request.layout == "BGRX":
                image = Image.frombuffer("RGB", size, pixels, "raw", "BGRX", 0, 1)
            else:
                image = Image.frombytes("RGB", size, pixels)
            started = time.perf_counter()
            result = scrubber.scrub_result(image, Monitor(*request.monitor))
            reply = OcrReply(
                [box.as_tuple() for box in result.boxes],
                [region.as_tuple() for region in result.regions],
                time.perf_counter() - started,
            )
        except (OcrError, ValueError) as error:
            reply = OcrReply(error=str(error))
        del pixels
        _write_message(replies, reply)


def main() -> None:
    from demotrace.memory import keep_heap_flat
    from demotrace.threads import name_os_thread

    _die_with_parent()
    name_os_thread("dt-ocr-worker")
    keep_heap_flat()
    os.nice(WORKER_NICENESS)  # OCR waits; the person's own programs do not
    settings = msgspec.json.decode(sys.argv[1], type=OcrSettings) if len(sys.argv) > 1 else OcrSettings()
    # Replies get a descriptor of their own; anything a library prints goes to stderr, not into them.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(settings, sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
