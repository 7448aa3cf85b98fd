"""Screen safeguards: read a frame with OCR, find sensitive text with the typed-text detectors, and
paint it out (solid black) before the frame is encoded or written anywhere.

The pipeline, one function per step:

1. :func:`~demotrace.redact.regions.changed_regions` (pure): which parts of the screen changed since the
   previous frame, as full-width bands of 64 px tiles, padded vertically so a text line crossing a tile
   edge is whole.
2. :func:`~demotrace.redact.ocr.ocr_words` (the only I/O): Tesseract's word boxes for those bands (or the
   whole frame), through pipes only, never a file.
3. :func:`~demotrace.redact.lines.group_lines` (pure): words into text lines by geometry, split at wide
   gaps (columns).
4. :func:`~demotrace.redact.screen.sensitive_words` (pure): the screen detectors over each line's text,
   as OCR read it and in a lenient reading that undoes the usual OCR slips on secrets.
5. :func:`~demotrace.redact.paint.blackout_image`: those words' boxes, with a small margin, filled with
   black.

:class:`ScreenScrubber` keeps, per stream of frames from one monitor, the previous raw frame and its
boxes: only changed bands are read again, and a previous box is kept wherever its pixels did not change
(a card number that stays on screen stays covered without being read again).

Not handled: a token wrapped over two lines is two texts (each half must be sensitive on its own to be
found); masked password echo (dots) is left as it is, since it shows nothing but a length.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from demotrace.geometry import Box
from demotrace.redact.detectors.base import Detector
from demotrace.redact.ocr import OcrSettings, ocr_words
from demotrace.redact.paint import blackout_image
from demotrace.redact.regions import regions_to_read
from demotrace.redact.screen import SensitiveWord, word_cover, words_to_cover


@dataclass(frozen=True)
class ScrubResult:
    """``image``: the frame with ``boxes`` painted black (a copy; the input is untouched).
    ``regions``: what was read by OCR (the whole frame, the changed bands, or nothing)."""

    image: Image.Image
    boxes: list[Box]
    ocr_seconds: float
    regions: list[Box]


def find_sensitive_words(
    image: Image.Image,
    regions: Sequence[Box] | None = None,
    detectors: Sequence[Detector] | None = None,
    settings: OcrSettings | None = None,
) -> list[SensitiveWord]:
    return words_to_cover(ocr_words(image, regions, settings), detectors)


def find_sensitive_boxes(
    image: Image.Image,
    regions: Sequence[Box] | None = None,
    detectors: Sequence[Detector] | None = None,
    settings: OcrSettings | None = None,
) -> list[Box]:
    """Boxes (with a margin) of the words in ``regions`` of the image (all of it if None) that hold
    sensitive text."""
    width, height = image.size
    return [
        word_cover(found.word, width, height)
        for found in find_sensitive_words(image, regions, detectors, settings)
    ]


def scrub_frame(
    image: Image.Image,
    previous_image: Image.Image | None = None,
    previous_boxes: Sequence[Box] = (),
    detectors: Sequence[Detector] | None = None,
    settings: OcrSettings | None = None,
) -> ScrubResult:
    """Find and paint out sensitive text. With ``previous_image`` (and the boxes found on it), only the
    bands that changed are read, and a previous box is kept where none of its pixels changed."""
    started = time.perf_counter()
    regions, kept = regions_to_read(image, previous_image, previous_boxes)
    found = find_sensitive_boxes(image, regions, detectors, settings) if regions else []
    ocr_seconds = time.perf_counter() - started
    boxes = _unique([*kept, *found])
    return ScrubResult(blackout_image(image, boxes), boxes, ocr_seconds, regions)


def _unique(boxes: Iterable[Box]) -> list[Box]:
    return list(dict.fromkeys(boxes))


@dataclass
class ScreenScrubber:
    """Scrubs a stream of frames of one monitor, reading only what changed since the last one.

    Keeps the last raw frame and its boxes in memory only. Not thread-safe: one per thread (or guard it).
    """

    detectors: Sequence[Detector] | None = None
    settings: OcrSettings = field(default_factory=OcrSettings)
    incremental: bool = True
    previous_image: Image.Image | None = None
    previous_boxes: list[Box] = field(default_factory=list)

    def scrub(self, image: Image.Image) -> ScrubResult:
        previous = self.previous_image if self.incremental else None
        result = scrub_frame(image, previous, self.previous_boxes, self.detectors, self.settings)
        self.previous_image = image.copy()
        self.previous_boxes = result.boxes
        return result

    def forget(self) -> None:
        """Drop the remembered frame, e.g. on pause: its unredacted pixels should not linger in memory."""
        self.previous_image = None
        self.previous_boxes = []


__all__ = ["ScreenScrubber", "ScrubResult", "find_sensitive_boxes", "find_sensitive_words", "scrub_frame"]
