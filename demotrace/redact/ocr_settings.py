"""How screen text is read: the OCR settings and the one OCR error (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OCR_SCALE = 2
# Tesseract "sparse text": finds words anywhere, in any layout (screens are not pages).
OCR_PAGE_SEGMENTATION = 11
# Leptonica's adaptive Otsu: one global threshold loses small light-on-white text next to a dark
# desktop (measured: a whole xterm of 6x13 text went missing with the default method).
OCR_THRESHOLDING_METHOD = 1
OCR_TIMEOUT_SECONDS = 120.0
# Lines whose verdicts are remembered by their pixels (a few hundred bytes each, no text kept).
LINE_CACHE_ENTRIES = 4096


class OcrError(RuntimeError):
    """Tesseract is missing, failed, or printed something we cannot read."""


@dataclass(frozen=True)
class OcrSettings:
    """``engine``: "api" keeps libtesseract loaded (tesserocr), "cli" runs the ``tesseract`` command per
    image. ``reader``: "lines" finds text lines in the pixels and reads only those that changed, each
    once (``redact/line_reader.py``); "bands" reads whole changed bands in sparse mode. ``scale``: the
    upscale of small text before OCR (bands: every band)."""

    scale: int = OCR_SCALE
    page_segmentation: int = OCR_PAGE_SEGMENTATION
    thresholding_method: int = OCR_THRESHOLDING_METHOD
    language: str = "eng"
    tesseract: str = "tesseract"
    timeout_s: float = OCR_TIMEOUT_SECONDS
    engine: Literal["api", "cli"] = "api"
    reader: Literal["lines", "bands"] = "lines"
    line_cache_entries: int = LINE_CACHE_ENTRIES


__all__ = ["LINE_CACHE_ENTRIES", "OCR_SCALE", "OcrError", "OcrSettings"]
