"""Tesseract kept loaded: libtesseract through tesserocr, one API instance for the life of the process.

The ``tesseract`` command loads its model on every start (~75 ms of CPU before it reads a pixel, measured
in /work/shared/notes/screen-ocr-engines.md); one loaded instance reads a text line in a few ms. Images
go to it from memory (``SetImageBytes``), never through a file.

The tesserocr wheel bundles its own libtesseract; the model is Debian's (``tesseract-ocr-eng``), found in
``$TESSDATA_PREFIX`` or under /usr/share/tesseract-ocr/*/tessdata.
"""

from __future__ import annotations

import glob
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from demotrace.geometry import Box
from demotrace.redact.lines import OcrWord
from demotrace.redact.ocr_settings import OcrError, OcrSettings

# Tesseract's page segmentation modes used here: one text line, and sparse text for blocks.
PSM_SINGLE_LINE = 7
PSM_SPARSE_TEXT = 11
TESSDATA_GLOBS = ("/usr/share/tesseract-ocr/*/tessdata", "/usr/share/tessdata", "/usr/local/share/tessdata")

if TYPE_CHECKING:  # the OCR worker reads bytes and never loads numpy (16 MiB resident, measured)
    import numpy as np

    Grey = np.ndarray[tuple[int, int], np.dtype[np.uint8]]


class TextReader(Protocol):
    """What reads the words of one grey image: a loaded Tesseract here, or the OCR worker's."""

    def read_bytes(
        self, grey: bytes, width: int, height: int, scale: int, *, sparse: bool = False
    ) -> list[OcrWord]: ...


def tessdata_folder(language: str = "eng") -> str:
    """The folder holding ``<language>.traineddata``: $TESSDATA_PREFIX, else Debian's place."""
    candidates = [os.environ["TESSDATA_PREFIX"]] if os.environ.get("TESSDATA_PREFIX") else []
    for pattern in TESSDATA_GLOBS:
        candidates += sorted(glob.glob(pattern), reverse=True)  # the newest version first
    for folder in candidates:
        if (Path(folder) / f"{language}.traineddata").is_file():
            return folder
    raise OcrError(
        f"no Tesseract model for {language!r} (looked in {', '.join(candidates) or 'nothing'}):"
        " install tesseract-ocr-eng (apt install tesseract-ocr)"
    )


class TesseractApi:
    """One loaded Tesseract. Not thread-safe: one per thread (the OCR worker has one)."""

    def __init__(self, language: str = "eng", thresholding_method: int = 1) -> None:
        # One OpenMP thread, read when the library starts (see redact/ocr.py for why).
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        try:
            import tesserocr
        except ImportError as error:
            raise OcrError("tesserocr is not installed (uv sync installs it)") from error
        self._tesserocr: Any = tesserocr
        try:
            self._api: Any = tesserocr.PyTessBaseAPI(
                path=tessdata_folder(language), lang=language, psm=PSM_SINGLE_LINE
            )
        except RuntimeError as error:
            raise OcrError(f"Tesseract could not load its model: {error}") from error
        self._api.SetVariable("thresholding_method", str(thresholding_method))
        self._psm = PSM_SINGLE_LINE

    def read(self, grey: Grey, scale: int, *, sparse: bool = False) -> list[OcrWord]:
        """The words of a grey image (already scaled by ``scale``), in the image's unscaled pixels."""
        height, width = grey.shape
        return self.read_bytes(grey.tobytes(), width, height, scale, sparse=sparse)

    def read_bytes(
        self, grey: bytes, width: int, height: int, scale: int, *, sparse: bool = False
    ) -> list[OcrWord]:
        """Like ``read``, for grey levels already as bytes (row after row, one byte a pixel): an
        upscaled line goes from Pillow to Tesseract with no array copy between."""
        psm = PSM_SPARSE_TEXT if sparse else PSM_SINGLE_LINE
        if psm != self._psm:
            self._api.SetPageSegMode(psm)
            self._psm = psm
        self._api.SetImageBytes(grey, width, height, 1, width)
        self._api.SetSourceResolution(96 * scale)
        if not self._api.Recognize():
            raise OcrError("Tesseract failed to read an image")
        words: list[OcrWord] = []
        level = self._tesserocr.RIL.WORD
        for found in self._tesserocr.iterate_level(self._api.GetIterator(), level):
            try:
                text = found.GetUTF8Text(level)
            except RuntimeError:  # tesserocr's way of saying the word has no text
                continue
            if not text or not text.strip():
                continue
            left, top, right, bottom = found.BoundingBox(level)
            box = Box(left // scale, top // scale, -(-right // scale), -(-bottom // scale))
            words.append(OcrWord(text.strip(), box, float(found.Confidence(level))))
        self._api.Clear()
        return words

    def close(self) -> None:
        self._api.End()


_loaded = threading.local()


def loaded_api(settings: OcrSettings) -> TesseractApi:
    """This thread's loaded Tesseract for the settings' language (loaded on first use, kept after)."""
    key = (settings.language, settings.thresholding_method)
    api: TesseractApi | None = getattr(_loaded, "api", None)
    if api is None or getattr(_loaded, "key", None) != key:
        if api is not None:
            _loaded.api = None
            api.close()
        api = TesseractApi(settings.language, settings.thresholding_method)
        _loaded.api, _loaded.key = api, key
    return api


__all__ = [
    "PSM_SINGLE_LINE",
    "PSM_SPARSE_TEXT",
    "TesseractApi",
    "TextReader",
    "loaded_api",
    "tessdata_folder",
]
