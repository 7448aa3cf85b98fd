"""The OCR engine, the only I/O of the screen redaction: Tesseract's words for regions of a frame.

The image goes to ``tesseract stdin stdout`` over a pipe, never to a file: pytesseract writes every image
to a temporary file first, which would put unredacted pixels on disk, so it is not used. Regions are cut
into strips of bounded height and stacked on one canvas per Tesseract run.

Measured (``bench/redaction.py --ocr``): Tesseract with OpenMP on takes 2-5x longer on a 2-core laptop
than with one thread (it spins its threads), so it always runs with ``OMP_THREAD_LIMIT=1``. Upscaling
by 2 (bicubic) makes X's 6x13 bitmap terminal font readable (digits read right, ``@`` found); at 1x it
misreads ``1111`` and drops the ``@``.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from demotrace.geometry import Box
from demotrace.redact.lines import OcrWord
from demotrace.redact.ocr_settings import OCR_SCALE, OcrError, OcrSettings
from demotrace.redact.tesseract_api import loaded_api

# Gap between stacked bands on the OCR canvas, so no line reads across two bands.
BAND_GAP_PX = 16
# Tallest canvas handed to one Tesseract run, and the overlap of strips cut from taller regions.
OCR_STRIP_PX = 400
OCR_STRIP_OVERLAP_PX = 48


def parse_tsv(tsv: str, scale: int = 1) -> list[OcrWord]:
    """Words from Tesseract's TSV output, in the coordinates of the image before it was scaled."""
    lines = tsv.splitlines()
    if not lines or not lines[0].startswith("level\t"):
        raise OcrError(f"unexpected Tesseract output: {tsv[:80]!r}")
    words: list[OcrWord] = []
    for line in lines[1:]:
        columns = line.split("\t")
        if len(columns) != 12:
            continue
        level, _, _, _, _, _, left, top, width, height, confidence, text = columns
        if level != "5" or not text.strip():
            continue
        x, y, w, h = int(left), int(top), int(width), int(height)
        box = Box(x // scale, y // scale, -(-(x + w) // scale), -(-(y + h) // scale))
        words.append(OcrWord(text.strip(), box, float(confidence)))
    return words


def _tesseract_env() -> dict[str, str]:
    # One OpenMP thread: faster on laptops (its threads spin) and leaves cores to the user.
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def run_tesseract(image: Image.Image, settings: OcrSettings) -> str:
    """Tesseract's TSV for an image, passed through pipes only (never a file)."""
    buffer = io.BytesIO()
    # Uncompressed PNM: compressing a canvas only for Tesseract to decompress it cost more than the pipe.
    image.save(buffer, "PPM")
    command = [
        settings.tesseract,
        "stdin",
        "stdout",
        "--psm",
        str(settings.page_segmentation),
        "--dpi",
        str(96 * settings.scale),
        "-c",
        f"thresholding_method={settings.thresholding_method}",
        "-l",
        settings.language,
        "tsv",
    ]
    try:
        done = subprocess.run(
            command,
            input=buffer.getvalue(),
            capture_output=True,
            env=_tesseract_env(),
            timeout=settings.timeout_s,
            check=False,
        )
    except FileNotFoundError as error:
        raise OcrError(
            f"{settings.tesseract} not found: install Tesseract (apt install tesseract-ocr)"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise OcrError(f"Tesseract took more than {settings.timeout_s:.0f} s") from error
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise OcrError(f"Tesseract failed ({done.returncode}): {message}")
    return done.stdout.decode(errors="replace")


def _whiten_solid_dark(grey: Image.Image, block: int = 8, dark: int = 40) -> Image.Image:
    """Blocks that are dark all over (desktop background, our own black boxes, dark panels) painted
    white: Tesseract's thresholding misreads text beside large dark areas, and no text stroke fills a
    whole block."""
    pixels = np.asarray(grey).copy()
    rows, columns = pixels.shape[0] // block, pixels.shape[1] // block
    if rows == 0 or columns == 0:
        return grey
    blocks = pixels[: rows * block, : columns * block].reshape(rows, block, columns, block)
    solid = blocks.max(axis=(1, 3)) < dark
    blocks[solid[:, None, :, None].repeat(block, axis=1).repeat(block, axis=3)] = 255
    return Image.fromarray(pixels)


def _for_ocr(image: Image.Image, scale: int) -> Image.Image:
    grey = _whiten_solid_dark(image.convert("L"))
    if scale == 1:
        return grey
    return grey.resize((grey.width * scale, grey.height * scale), Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class _Slot:
    """Where a region of the frame sits on the OCR canvas (both at frame scale)."""

    region: Box
    canvas_top: int


def stack_regions(image: Image.Image, regions: Sequence[Box]) -> tuple[Image.Image, list[_Slot]]:
    """The regions cut from the frame and stacked on one white canvas, so one Tesseract run reads them
    all (each run costs ~0.1 s just to start)."""
    width = max(region.width for region in regions)
    height = sum(region.height for region in regions) + BAND_GAP_PX * (len(regions) - 1)
    canvas = Image.new("L", (width, height), 255)
    slots: list[_Slot] = []
    top = 0
    for region in regions:
        canvas.paste(image.crop(region.as_tuple()).convert("L"), (0, top))
        slots.append(_Slot(region, top))
        top += region.height + BAND_GAP_PX
    return canvas, slots


def _unstack(words: Iterable[OcrWord], slots: Sequence[_Slot]) -> list[OcrWord]:
    """Words on the canvas back in frame coordinates; a word outside every slot (in a gap) is dropped."""
    placed: list[OcrWord] = []
    for word in words:
        middle = (word.box.top + word.box.bottom) // 2
        for slot in slots:
            if slot.canvas_top <= middle < slot.canvas_top + slot.region.height:
                dx, dy = slot.region.left, slot.region.top - slot.canvas_top
                box = Box(word.box.left + dx, word.box.top + dy, word.box.right + dx, word.box.bottom + dy)
                placed.append(OcrWord(word.text, box, word.confidence))
                break
    return placed


def ocr_words(
    image: Image.Image, regions: Sequence[Box] | None = None, settings: OcrSettings | None = None
) -> list[OcrWord]:
    """Tesseract's words in the given regions of the image (all of it if None), in image coordinates."""
    chosen = settings or OcrSettings()
    if regions is not None and not regions:
        return []
    whole = regions if regions is not None else [Box(0, 0, image.width, image.height)]
    # Tesseract misses small text (an xterm's 6x13 font) in a whole 1080p page that it reads in a strip
    # of the same page: read tall regions in overlapping strips, a bounded canvas per run.
    strips = [strip for region in whole for strip in _strips(region)]
    words: list[OcrWord] = []
    for group in _canvas_groups(strips):
        canvas, slots = stack_regions(image, group)
        words += _unstack(_read_canvas(_for_ocr(canvas, chosen.scale), chosen), slots)
    return _without_duplicates(words)


def _read_canvas(canvas: Image.Image, settings: OcrSettings) -> list[OcrWord]:
    if settings.engine == "api":
        return loaded_api(settings).read(np.asarray(canvas), settings.scale, sparse=True)
    return parse_tsv(run_tesseract(canvas, settings), settings.scale)


def _strips(region: Box) -> list[Box]:
    """The region cut into strips of at most OCR_STRIP_PX rows, overlapping by OCR_STRIP_OVERLAP_PX so a
    text line cut by one strip's edge is whole in the next."""
    if region.height <= OCR_STRIP_PX:
        return [region]
    strips = []
    top = region.top
    while True:
        bottom = min(top + OCR_STRIP_PX, region.bottom)
        strips.append(Box(region.left, top, region.right, bottom))
        if bottom >= region.bottom:
            return strips
        top = bottom - OCR_STRIP_OVERLAP_PX


def _canvas_groups(strips: Sequence[Box]) -> list[list[Box]]:
    """Strips in groups whose stacked height stays within OCR_STRIP_PX (one Tesseract run each)."""
    groups: list[list[Box]] = []
    height = 0
    for strip in strips:
        if groups and height + BAND_GAP_PX + strip.height <= OCR_STRIP_PX:
            groups[-1].append(strip)
            height += BAND_GAP_PX + strip.height
        else:
            groups.append([strip])
            height = strip.height
    return groups


def _without_duplicates(words: Sequence[OcrWord]) -> list[OcrWord]:
    """A word read twice in the overlap of two strips is kept once (same text, same place ±3 px)."""
    kept: list[OcrWord] = []
    for word in words:
        if not any(
            other.text == word.text
            and abs(other.box.left - word.box.left) <= 3
            and abs(other.box.top - word.box.top) <= 3
            for other in kept
        ):
            kept.append(word)
    return kept


__all__ = ["OCR_SCALE", "OcrError", "OcrSettings", "ocr_words", "parse_tsv", "run_tesseract", "stack_regions"]
