"""Frame scrubbing on the device: OCR redaction of the pixels, now (on AC power) or later (on battery).

Immediate mode: the recorder's frame thread calls :meth:`FrameScrubber.scrub` on the grabbed image and
encodes what it returns, so sensitive text is painted out before the first write.

Deferred mode (``policy.defer_ocr_on_battery``): on battery the frame thread spools frames with
``held=True`` instead; the uploader never sees them. When power is back, :meth:`DeferredScrubWorker.resume`
wakes the worker's thread, which decodes each held frame, scrubs it, re-encodes it in the same media type
and releases it with ``spool.replace_held``. The thread sleeps on a condition between runs: no polling.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from PIL import Image, UnidentifiedImageError

from demotrace.capture.sink import HeldRecords
from demotrace.frames.images import PNG_COMPRESS_LEVEL, WEBP_METHOD, WEBP_QUALITY
from demotrace.frames.pixels import ScreenPixels
from demotrace.geometry import Box
from demotrace.model import Frame, Monitor
from demotrace.redact.detectors.base import Detector
from demotrace.redact.ocr import OcrError, OcrSettings
from demotrace.redact.paint import blackout_pixels
from demotrace.redact.scrubber import FoundBoxes, Grey, ScreenScrubber, ScrubResult
from demotrace.redact.tesseract_api import TextReader
from demotrace.threads import name_os_thread

log = logging.getLogger(__name__)

# Held frames read from the spool per query: each is decoded in memory, so keep it small.
HELD_BATCH = 16

SCRUBBABLE_MEDIA_TYPES = ("image/png", "image/webp")

MonitorKey = tuple[int, int, int, int]


class ScrubError(Exception):
    """A frame cannot be scrubbed (undecodable pixels, unknown media type, OCR failure); it stays held."""


def _key(monitor: Monitor | None, image: Image.Image | Grey) -> MonitorKey:
    if monitor is None:
        height, width = (image.height, image.width) if isinstance(image, Image.Image) else image.shape
        return (0, 0, width, height)
    return (monitor.left, monitor.top, monitor.width, monitor.height)


def decode_frame_image(frame: Frame) -> Image.Image:
    """A frame's pixels as an RGB image; ScrubError if they do not decode."""
    try:
        with Image.open(io.BytesIO(frame.data)) as opened:
            opened.load()
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ScrubError(f"frame {frame.frame_id} ({frame.media_type}) does not decode: {error}") from error


def webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP file holds a lossless (VP8L) bitstream, read from its RIFF chunks."""
    position = 12  # after "RIFF", the file size and "WEBP"
    while position + 8 <= len(data):
        fourcc = data[position : position + 4]
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        position += 8 + size + (size & 1)
    return False


def encode_as(image: Image.Image, media_type: str, *, lossless: bool = False) -> bytes:
    """Encode in the given media type (WebP: lossless or lossy as the original was)."""
    buffer = io.BytesIO()
    if media_type == "image/png":
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif media_type == "image/webp" and lossless:
        image.save(buffer, "WEBP", lossless=True, method=WEBP_METHOD)
    elif media_type == "image/webp":
        image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    else:
        raise ScrubError(f"cannot re-encode frames of media type {media_type!r}")
    return buffer.getvalue()


class FrameScrubber:
    """OCR redaction for the frames of one recorder, remembering the last frame of each monitor so only
    what changed is read again. Thread-safe: frames are scrubbed one at a time."""

    def __init__(
        self,
        detectors: Sequence[Detector] | None = None,
        settings: OcrSettings | None = None,
        *,
        incremental: bool = True,
    ) -> None:
        self.detectors = detectors
        self.settings = settings or OcrSettings()
        self.incremental = incremental
        self._by_monitor: dict[MonitorKey, ScreenScrubber] = {}
        self._lock = threading.Lock()

    def _stream(self, key: MonitorKey) -> ScreenScrubber:
        scrubber = self._by_monitor.get(key)
        if scrubber is None:
            scrubber = ScreenScrubber(
                self.detectors, self.settings, incremental=self.incremental, reader=self._text_reader()
            )
            self._by_monitor[key] = scrubber
        return scrubber

    def _text_reader(self) -> TextReader | None:
        """Who reads text lines: None for a Tesseract loaded in the scrubbing thread."""
        return None

    def scrub_result(self, image: Image.Image, monitor: Monitor | None = None) -> ScrubResult:
        """Scrub one grabbed image of ``monitor`` (None: a single-monitor stream keyed by size)."""
        with self._lock:
            return self._stream(_key(monitor, image)).scrub(image)

    def find_boxes(self, image: Image.Image | Grey, monitor: Monitor | None = None) -> FoundBoxes:
        """The boxes to paint on one grabbed image (RGB, or grey levels: all OCR reads), without painting."""
        with self._lock:
            return self._stream(_key(monitor, image)).find(image)

    def scrub(self, image: Image.Image, monitor: Monitor | None = None) -> Image.Image:
        """The image with its sensitive text painted black (a new image); raises OcrError if Tesseract
        fails, in which case the caller must not write the frame."""
        return self.scrub_result(image, monitor).image

    def cover(self, pixels: ScreenPixels, monitor: Monitor | None = None) -> list[Box]:
        """Paint sensitive text black in place in a grab's pixels; returns the boxes painted. Raises
        OcrError like ``scrub``, and then the caller must not write the frame."""
        boxes = self.find_boxes(pixels.grey_array(), monitor).boxes
        if boxes:
            blackout_pixels(pixels, boxes)
        return boxes

    def scrub_record(self, frame: Frame) -> Frame:
        """A spooled frame, decoded, scrubbed and re-encoded in its own media type.

        Only whole images can be scrubbed: a delta frame holds tiles that mean nothing without its base,
        so held frames must be key frames."""
        if frame.media_type not in SCRUBBABLE_MEDIA_TYPES:
            raise ScrubError(
                f"frame {frame.frame_id} is {frame.media_type}: only whole images"
                f" ({', '.join(SCRUBBABLE_MEDIA_TYPES)}) can be scrubbed after the fact"
            )
        image = decode_frame_image(frame)
        monitor = Monitor(frame.left, frame.top, frame.width, frame.height)
        try:
            scrubbed = self.scrub(image, monitor)
        except OcrError as error:
            raise ScrubError(f"frame {frame.frame_id}: {error}") from error
        lossless = frame.media_type == "image/webp" and webp_is_lossless(frame.data)
        data = encode_as(scrubbed, frame.media_type, lossless=lossless)
        return msgspec.structs.replace(frame, data=data, width=scrubbed.width, height=scrubbed.height)

    def forget(self) -> None:
        """Drop every remembered frame (pause, stop): no unredacted pixels linger in memory."""
        with self._lock:
            self._by_monitor.clear()


@dataclass
class DrainReport:
    released: int = 0  # frames scrubbed and released for upload (and held batches released as they were)
    failed: int = 0  # frames that could not be scrubbed; they stay held
    interrupted: bool = False  # paused (back on battery) or closed before every held frame was done


class DeferredScrubWorker:
    """Scrubs the spool's held frames on its own thread whenever :meth:`resume` says power is back.

    Give it its own :class:`FrameScrubber` (not the frame thread's): held frames are old and would
    otherwise be diffed against live ones, which is correct but reads more of each frame.
    """

    def __init__(self, spool: HeldRecords, scrubber: FrameScrubber, *, batch: int = HELD_BATCH) -> None:
        self.spool = spool
        self.scrubber = scrubber
        self.batch = batch
        self.last_report = DrainReport()
        self._state = threading.Condition()
        self._requested = 0  # resume() calls so far
        self._completed = 0  # resume() calls whose drain has finished
        self._on_ac = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="demotrace-ocr-deferred", daemon=True)

    def start(self) -> DeferredScrubWorker:
        self._thread.start()
        return self

    def resume(self) -> None:
        """Power is back on AC: scrub and release every held frame (returns at once)."""
        with self._state:
            self._on_ac = True
            self._requested += 1
            self._state.notify_all()

    def pause(self) -> None:
        """Back on battery: stop after the frame in progress; the rest stay held until the next resume."""
        with self._state:
            self._on_ac = False

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every resume() so far has been served; False if ``timeout`` passed first."""
        with self._state:
            return self._state.wait_for(lambda: self._completed >= self._requested, timeout)

    def close(self, timeout: float | None = None) -> None:
        with self._state:
            self._closing = True
            self._on_ac = False
            self._state.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.scrubber.forget()

    def _run(self) -> None:
        name_os_thread()
        while True:
            with self._state:
                self._state.wait_for(lambda: self._closing or self._requested > self._completed)
                if self._closing:
                    self._completed = self._requested
                    self._state.notify_all()
                    return
                target = self._requested
            try:
                self.last_report = self._drain()
            except Exception:  # the spool failed: log it and wait for the next resume
                log.exception("deferred frame scrub stopped")
            finally:
                self.scrubber.forget()
                with self._state:
                    self._completed = max(self._completed, target)
                    self._state.notify_all()

    def _keep_going(self) -> bool:
        with self._state:
            return self._on_ac and not self._closing

    def _drain(self) -> DrainReport:
        """Scrub and release held records until none is left or power goes back to battery. A frame that
        fails is skipped for the rest of this drain and tried again on the next resume."""
        report = DrainReport()
        failed_ids: set[str] = set()
        while True:
            held = [
                record
                for record in self.spool.held(limit=len(failed_ids) + self.batch)
                if not isinstance(record, Frame) or record.frame_id not in failed_ids
            ]
            if not held:
                return report
            for record in held:
                if not self._keep_going():
                    report.interrupted = True
                    return report
                if not isinstance(record, Frame):
                    # A batch was text-redacted before it was written; nothing to scrub.
                    self.spool.replace_held(record)
                    report.released += 1
                    continue
                try:
                    scrubbed = self.scrubber.scrub_record(record)
                except ScrubError as error:
                    log.error("held frame stays held: %s", error)
                    failed_ids.add(record.frame_id)
                    report.failed += 1
                    continue
                self.spool.replace_held(scrubbed)
                report.released += 1


__all__ = [
    "SCRUBBABLE_MEDIA_TYPES",
    "DeferredScrubWorker",
    "DrainReport",
    "FrameScrubber",
    "ScrubError",
    "decode_frame_image",
    "encode_as",
    "webp_is_lossless",
]
