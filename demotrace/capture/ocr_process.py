"""Screen OCR in a worker process of its own, so the recorder stays small and steady.

Tesseract's model and working buffers (~40 MB) live in a worker that runs at a lower CPU priority,
dies with the recorder, and is restarted after a failure (a crash loses no frame unscrubbed: that
frame is dropped, as for any OCR error). The recorder finds the text lines that changed, keeps the
line cache and decides what to cover (``redact/line_reader.py``, with the numpy it holds anyway);
the worker only turns a line's pixels into words, so it loads neither numpy nor the detectors
(bench/record.py: 16 MiB of the tree's peak was numpy loaded a second time, in the worker).

Protocol over the worker's stdin/stdout (anonymous pipes, never a file): a 4-byte length and a
MessagePack ``OcrRequest``, then the raw pixels (a text line's grey levels, upscaled when small); the
answer is a 4-byte length and an ``OcrReply`` with the words. With ``OcrSettings.reader="bands"`` the
whole frame goes to the worker instead and the boxes come back. The recorder paints the boxes itself.

The worker is ``capture/ocr_worker.py`` (``python -m demotrace.capture.ocr_worker``, what the recorder
starts; not for people); the protocol is ``capture/ocr_protocol.py``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import msgspec
from PIL import Image

from demotrace.capture.ocr_protocol import (
    BoxTuple,
    OcrReply,
    OcrRequest,
    Payload,
    read_message,
    write_message,
)
from demotrace.capture.scrub import FrameScrubber
from demotrace.frames.pixels import ScreenPixels
from demotrace.geometry import Box
from demotrace.model import Monitor
from demotrace.redact.lines import OcrWord
from demotrace.redact.ocr import OcrError, OcrSettings
from demotrace.redact.paint import blackout_image, blackout_pixels
from demotrace.redact.scrubber import ScrubResult
from demotrace.redact.tesseract_api import TextReader

WORKER_MODULE = "demotrace.capture.ocr_worker"


class OcrProcessScrubber(FrameScrubber):
    """A FrameScrubber whose OCR happens in a worker process (started on first use). Uses the default
    screen detectors; thread-safe like its parent (one frame at a time). A frame with nothing to cover
    comes back as the very image given (callers must not change it afterwards)."""

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
            [sys.executable, "-m", WORKER_MODULE, settings],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # its warnings go where the recorder's go
            # Its own process group: a terminal's Ctrl+C is for the recorder, which ends the worker by
            # closing its input once the last frame is scrubbed (and PDEATHSIG covers a killed recorder).
            process_group=0,
        )
        return self._worker

    def _ask(self, request: OcrRequest, payload: Payload = b"") -> OcrReply:
        worker = self._ensure_worker()
        assert worker.stdin is not None and worker.stdout is not None
        try:
            write_message(worker.stdin, request, payload)
            reply = read_message(worker.stdout, OcrReply)
        except (OSError, EOFError, msgspec.DecodeError) as error:
            self._stop_worker()  # whatever state it had is gone; the next frame starts a new one
            raise OcrError(f"the OCR worker failed ({error}); it is restarted for the next frame") from error
        except BaseException:
            self._stop_worker()  # stopped mid-frame (the pixels' bands): the stream is out of step
            raise
        assert isinstance(reply, OcrReply)
        if reply.error:
            raise OcrError(reply.error)
        return reply

    @staticmethod
    def _box_of(monitor: Monitor | None, size: tuple[int, int]) -> BoxTuple:
        if monitor is None:
            return (0, 0, *size)
        return (monitor.left, monitor.top, monitor.width, monitor.height)

    def _text_reader(self) -> TextReader | None:
        return self

    def read_bytes(
        self, grey: bytes, width: int, height: int, scale: int, *, sparse: bool = False
    ) -> list[OcrWord]:
        """One line's words, read in the worker (called by the line reader, under the frame's lock)."""
        request = OcrRequest(
            "read", width=width, height=height, pixel_bytes=len(grey), layout="L", scale=scale, sparse=sparse
        )
        reply = self._ask(request, grey)
        return [OcrWord(text, Box(*box), confidence) for text, box, confidence in reply.words]

    def scrub_result(self, image: Image.Image, monitor: Monitor | None = None) -> ScrubResult:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.settings.reader == "lines":
            found = self.find_boxes(image, monitor)
            boxes, ocr_seconds, regions = found.boxes, found.ocr_seconds, found.regions
        else:
            boxes, ocr_seconds, regions = self._find_in_worker(image, monitor)
        # Most frames hold nothing sensitive: they pass as they are, without a frame-sized copy.
        scrubbed = blackout_image(image, boxes) if boxes else image
        return ScrubResult(scrubbed, boxes, ocr_seconds, regions)

    def _find_in_worker(
        self, image: Image.Image, monitor: Monitor | None
    ) -> tuple[list[Box], float, list[Box]]:
        """The bands reader: the whole frame goes to the worker, its boxes come back."""
        pixels = image.tobytes()
        request = OcrRequest(
            "scrub", self._box_of(monitor, image.size), image.width, image.height, len(pixels)
        )
        with self._lock:
            reply = self._ask(request, pixels)
        return [Box(*found) for found in reply.boxes], reply.ocr_seconds, [Box(*r) for r in reply.regions]

    def cover(self, pixels: ScreenPixels, monitor: Monitor | None = None) -> list[Box]:
        if self.settings.reader == "lines":
            return super().cover(pixels, monitor)
        # Grey levels are all OCR reads: a quarter of the grab's bytes cross the pipe, converted and
        # written band by band (no frame-sized RGB or grey copy on this side).
        with self._lock:
            size = pixels.width * pixels.height
            request = OcrRequest(
                "scrub", self._box_of(monitor, pixels.size), pixels.width, pixels.height, size, "L"
            )
            reply = self._ask(request, pixels.grey_bands())
        boxes = [Box(*found) for found in reply.boxes]
        if boxes:
            blackout_pixels(pixels, boxes)
        return boxes

    def forget(self) -> None:
        super().forget()
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


__all__ = ["WORKER_MODULE", "OcrProcessScrubber"]
