"""Screen scrubbing line by line: read only the text lines whose pixels changed, each distinct line once.

For each frame of a stream (grey pixels, which is all OCR sees):

1. The rows that changed since the previous frame, padded by a line's height: the only places a new
   line can be (the whole frame when there is no previous one).
2. The text lines there, found from the pixels (``text_lines.find_lines``: no OCR); only those with a
   changed pixel are new.
3. Each new line's pixels are hashed. A line seen before, anywhere on the screen (a list scrolled by a
   row, a window switched back to), has its verdict in the cache: no OCR. Otherwise the loaded Tesseract
   reads that line alone (``tesseract_api``: one line, single-line mode; small text upscaled), and
   ``screen.cover_line`` decides what to cover.
4. The previous frame's boxes stay wherever not one pixel under them changed.

The cache holds, per line, only a hash of its pixels and the boxes to paint (relative to the line):
no text, no pixels. It is dropped with the rest on ``forget`` (pause, stop).
"""

from __future__ import annotations

# hashlib's own blake2b, without hashlib: importing hashlib loads OpenSSL's libcrypto (3.3 MiB resident
# in the OCR worker, measured), for a hash that is CPython's built-in anyway.
from _blake2 import blake2b
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from demotrace.geometry import Box
from demotrace.redact.detectors.base import Detector
from demotrace.redact.lines import OcrWord
from demotrace.redact.ocr_settings import OcrSettings
from demotrace.redact.screen import cover_line
from demotrace.redact.tesseract_api import TextReader, loaded_api
from demotrace.redact.text_lines import MAX_LINE_PX, TextLine, lines_in

# Lines shorter than this (X's 6x13 terminal font, 12 px UI text) are upscaled before OCR: at 1x
# Tesseract misreads their digits and drops "@".
SMALL_LINE_PX = 32

Grey = np.ndarray[tuple[int, int], np.dtype[np.uint8]]


class LineCache:
    """Verdicts by line pixels, least recently used first out."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._boxes: OrderedDict[bytes, tuple[Box, ...]] = OrderedDict()

    def get(self, key: bytes) -> tuple[Box, ...] | None:
        found = self._boxes.get(key)
        if found is not None:
            self._boxes.move_to_end(key)
        return found

    def put(self, key: bytes, boxes: tuple[Box, ...]) -> None:
        if self.entries <= 0:
            return
        self._boxes[key] = boxes
        self._boxes.move_to_end(key)
        while len(self._boxes) > self.entries:
            self._boxes.popitem(last=False)

    def clear(self) -> None:
        self._boxes.clear()

    def __len__(self) -> int:
        return len(self._boxes)


def line_key(crop: Grey, block: bool) -> bytes:
    digest = blake2b(crop.tobytes(), digest_size=16)
    digest.update(f"{crop.shape}{block}".encode())
    return digest.digest()


# Rows compared at a time when looking for changed rows: no frame-sized mask of changes is ever made.
CHANGE_BAND_ROWS = 64


@dataclass(frozen=True)
class Changes:
    """Where two frames of one monitor differ, asked box by box: without a frame-sized mask (2 MB at
    1080p, beside the two frames, at the OCR worker's peak)."""

    previous: Grey
    current: Grey

    def within(self, box: Box) -> bool:
        rows, columns = slice(box.top, box.bottom), slice(box.left, box.right)
        return bool((self.previous[rows, columns] != self.current[rows, columns]).any())


def changed_rows(previous: Grey, current: Grey, also: Sequence[Box] = ()) -> tuple[list[Box], Changes]:
    """Full-width regions around every changed row (padded by a line's height, so a line touching a
    change is whole in them), and where the changes are. The rows of ``also`` count as changed."""
    height, width = current.shape
    row_changed = np.zeros(height, dtype=bool)
    for top in range(0, height, CHANGE_BAND_ROWS):
        bottom = min(height, top + CHANGE_BAND_ROWS)
        row_changed[top:bottom] = (previous[top:bottom] != current[top:bottom]).any(axis=1)
    for box in also:
        row_changed[max(0, box.top) : max(0, box.bottom)] = True
    regions: list[Box] = []
    for row in np.flatnonzero(row_changed).tolist():
        top, bottom = max(0, row - MAX_LINE_PX), min(height, row + 1 + MAX_LINE_PX)
        if regions and top <= regions[-1].bottom:
            regions[-1] = Box(0, regions[-1].top, width, bottom)
        else:
            regions.append(Box(0, top, width, bottom))
    return regions, Changes(previous, current)


def _as_dark_on_light(crop: Grey) -> Grey:
    """Light text on a dark background (dark themes, terminals, selected rows) turned dark on light."""
    if int(np.median(crop)) < 128:
        inverted: Grey = 255 - crop
        return inverted
    return crop


def _with_margin(crop: Grey) -> Grey:
    """The crop on a margin of its own background: Tesseract reads a glyph touching the edge badly."""
    margin = max(4, crop.shape[0] // 3)
    background = int(np.median(crop))
    framed: Grey = np.pad(crop, margin, mode="constant", constant_values=background)
    return framed


def _upscaled(crop: Grey, scale: int) -> tuple[bytes, int, int]:
    """The crop upscaled, as the grey bytes Tesseract takes and their size: one copy out of Pillow
    (a block's upscaled pixels are 4x its own; an array between would be one more such copy)."""
    from PIL import Image

    size = (crop.shape[1] * scale, crop.shape[0] * scale)
    resized = Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC)
    return resized.tobytes(), *size


@dataclass
class LineStats:
    """What the reader did, summed over frames (for benchmarks)."""

    frames: int = 0
    lines_changed: int = 0
    lines_read: int = 0
    lines_cached: int = 0


@dataclass
class LineReader:
    """Boxes to paint for a stream of frames of one monitor (grey pixels). Not thread-safe."""

    settings: OcrSettings = field(default_factory=OcrSettings)
    detectors: Sequence[Detector] | None = None
    previous: Grey | None = None
    previous_boxes: list[Box] = field(default_factory=list)
    stats: LineStats = field(default_factory=LineStats)
    # Who reads a line: None is this thread's loaded Tesseract; the recorder hands its OCR worker's.
    reader: TextReader | None = None

    def __post_init__(self) -> None:
        self.cache = LineCache(self.settings.line_cache_entries)

    def boxes(self, grey: Grey, *, incremental: bool = True) -> tuple[list[Box], list[Box]]:
        """The boxes to paint on this frame, and the regions whose lines were looked for."""
        height, width = grey.shape
        previous = self.previous if incremental else None
        changed: Changes | None = None
        kept: list[Box] = []
        dropped: list[Box] = []
        if previous is None or previous.shape != grey.shape:
            regions = [Box(0, 0, width, height)]
        else:
            changed = Changes(previous, grey)
            for box in self.previous_boxes:
                (dropped if changed.within(box) else kept).append(box)
            # A box dropped for a change under its margin may have covered an unchanged line beside
            # the change (an email above a new list row): that line is looked at again too.
            regions, _ = changed_rows(previous, grey, also=dropped)
        found: list[Box] = []
        for region in regions:
            for line in lines_in(grey, region):
                box = line.box
                if (
                    changed is not None
                    and not changed.within(box)
                    and not any(box.intersects(gone) for gone in dropped)
                ):
                    continue  # unchanged and still covered: its boxes, if any, are among those kept
                self.stats.lines_changed += 1
                found += self._line_boxes(grey, line)
        self.stats.frames += 1
        boxes = list(dict.fromkeys([*kept, *found]))
        self.previous = grey  # the caller hands it over (a fresh array per frame)
        self.previous_boxes = boxes
        return boxes, regions

    def _line_boxes(self, grey: Grey, line: TextLine) -> list[Box]:
        height, width = grey.shape
        area = line.box
        crop = grey[area.top : area.bottom, area.left : area.right]
        key = line_key(crop, line.block)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.lines_cached += 1
            return [box.shifted(area.left, area.top) for box in cached]
        self.stats.lines_read += 1
        words = self._read(crop, line, area)
        boxes = cover_line(words, line.box, line.ink, self.detectors, width, height)
        self.cache.put(key, tuple(box.shifted(-area.left, -area.top) for box in boxes))
        return boxes

    def _read(self, crop: Grey, line: TextLine, area: Box) -> list[OcrWord]:
        scale = self.settings.scale if line.block or line.box.height < SMALL_LINE_PX else 1
        image = _with_margin(_as_dark_on_light(crop))
        margin = (image.shape[0] - crop.shape[0]) // 2
        reader = self.reader if self.reader is not None else loaded_api(self.settings)
        if scale > 1:
            words = reader.read_bytes(*_upscaled(image, scale), scale, sparse=line.block)
        else:
            height, width = image.shape
            words = reader.read_bytes(image.tobytes(), width, height, scale, sparse=line.block)
        dx, dy = area.left - margin, area.top - margin
        return [OcrWord(word.text, word.box.shifted(dx, dy), word.confidence) for word in words]

    def forget(self) -> None:
        """Drop the remembered frame, boxes and verdicts: nothing of the screen lingers in memory."""
        self.previous = None
        self.previous_boxes = []
        self.cache.clear()


__all__ = ["SMALL_LINE_PX", "Changes", "LineCache", "LineReader", "LineStats", "changed_rows", "line_key"]
