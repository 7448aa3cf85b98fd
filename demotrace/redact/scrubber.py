"""Screen safeguards: read a frame with OCR, find sensitive text with the typed-text detectors, and
paint it out (solid black) before the frame is encoded or written anywhere.

Two readers, chosen by ``OcrSettings.reader``:

- ``"lines"`` (the default, ``redact/line_reader.py``): the text lines whose pixels changed are found in
  the pixels, and each distinct line is read once by a loaded Tesseract (``redact/tesseract_api.py``);
  a line seen before (scrolled, switched back to) is not read again. ``screen.cover_line`` decides what
  to paint, over the whole ink of each sensitive value.
- ``"bands"`` (the first design, kept for comparison in ``bench/redaction.py --ocr``):

  1. :func:`~demotrace.redact.regions.changed_regions` (pure): full-width bands of 64 px tiles around
     what changed, padded vertically so a text line crossing a tile edge is whole.
  2. :func:`~demotrace.redact.ocr.ocr_words`: Tesseract's word boxes for those bands (or the whole
     frame) in sparse mode, through pipes or the loaded library, never a file.
  3. :func:`~demotrace.redact.lines.group_lines` (pure): words into text lines by geometry.
  4. :func:`~demotrace.redact.screen.sensitive_words` (pure): the screen detectors over each line's
     text, as OCR read it and in a lenient reading that undoes the usual OCR slips on secrets.

Either way :func:`~demotrace.redact.paint.blackout_image` fills the boxes with black, and
:class:`ScreenScrubber` keeps, per stream of frames from one monitor, the previous frame and its boxes:
a previous box is kept wherever its pixels did not change (a card number that stays on screen stays
covered without being read again).

Not handled: a token wrapped over two lines is two texts (each half must be sensitive on its own to be
found); masked password echo (dots) is left as it is, since it shows nothing but a length.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from demotrace.geometry import Box
from demotrace.redact.detectors.base import Detector
from demotrace.redact.line_reader import Grey, LineReader
from demotrace.redact.ocr import OcrSettings, ocr_words
from demotrace.redact.paint import blackout_image
from demotrace.redact.regions import regions_to_read
from demotrace.redact.screen import SensitiveWord, word_cover, words_to_cover
from demotrace.redact.tesseract_api import TextReader


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
    """Find and paint out sensitive text. With ``previous_image`` (and the boxes found on it), only what
    changed is read, and a previous box is kept where none of its pixels changed."""
    scrubber = ScreenScrubber(detectors, settings or OcrSettings())
    if previous_image is not None:
        scrubber.remember(previous_image, previous_boxes)
    return scrubber.scrub(image)


def _unique(boxes: Iterable[Box]) -> list[Box]:
    return list(dict.fromkeys(boxes))


def grey_pixels(image: Image.Image | Grey) -> Grey:
    """The image's grey levels (what OCR reads) as a height x width array (an array is taken as it is)."""
    if not isinstance(image, Image.Image):
        return image
    grey: Grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    return grey


@dataclass(frozen=True)
class FoundBoxes:
    boxes: list[Box]
    regions: list[Box]
    ocr_seconds: float


@dataclass
class ScreenScrubber:
    """Scrubs a stream of frames of one monitor, reading only what changed since the last one (line by
    line by default: ``redact/line_reader.py``; whole changed bands with ``reader="bands"``).

    Keeps the last raw frame (grey for the line reader) and its boxes in memory only. Not thread-safe:
    one per thread (or guard it).
    """

    detectors: Sequence[Detector] | None = None
    settings: OcrSettings = field(default_factory=OcrSettings)
    incremental: bool = True
    previous_image: Image.Image | None = None
    previous_boxes: list[Box] = field(default_factory=list)
    reader: TextReader | None = None  # who reads a text line (None: a Tesseract loaded in this thread)
    lines: LineReader = field(init=False)

    def __post_init__(self) -> None:
        self.lines = LineReader(self.settings, self.detectors, reader=self.reader)

    def remember(self, image: Image.Image, boxes: Sequence[Box]) -> None:
        """Take ``image`` (with ``boxes`` found on it) as the previous frame."""
        if self.settings.reader == "lines":
            self.lines.previous = grey_pixels(image).copy()
            self.lines.previous_boxes = list(boxes)
        else:
            self.previous_image = image.copy()
            self.previous_boxes = list(boxes)

    def find(self, image: Image.Image | Grey) -> FoundBoxes:
        """The boxes to paint on this frame, an image or its grey levels (kept as the previous frame:
        do not change the array afterwards). The frame itself is left as it is."""
        started = time.perf_counter()
        if self.settings.reader == "lines":
            boxes, regions = self.lines.boxes(grey_pixels(image), incremental=self.incremental)
            return FoundBoxes(boxes, regions, time.perf_counter() - started)
        if not isinstance(image, Image.Image):
            image = Image.fromarray(image)
        previous = self.previous_image if self.incremental else None
        regions, kept = regions_to_read(image, previous, self.previous_boxes)
        found = find_sensitive_boxes(image, regions, self.detectors, self.settings) if regions else []
        boxes = _unique([*kept, *found])
        self.previous_image = image.copy()
        self.previous_boxes = boxes
        return FoundBoxes(boxes, regions, time.perf_counter() - started)

    def scrub(self, image: Image.Image) -> ScrubResult:
        found = self.find(image)
        return ScrubResult(blackout_image(image, found.boxes), found.boxes, found.ocr_seconds, found.regions)

    def forget(self) -> None:
        """Drop the remembered frame, e.g. on pause: its unredacted pixels should not linger in memory."""
        self.previous_image = None
        self.previous_boxes = []
        self.lines.forget()


__all__ = [
    "FoundBoxes",
    "Grey",
    "ScreenScrubber",
    "ScrubResult",
    "find_sensitive_boxes",
    "find_sensitive_words",
    "grey_pixels",
    "scrub_frame",
]
