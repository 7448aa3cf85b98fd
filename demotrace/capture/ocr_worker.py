"""The OCR worker process: reads text lines from its stdin and answers with their words.

Lean on purpose: it holds a loaded Tesseract and nothing of the recorder (no encoder, no spool, no
numpy: every module it loads is resident for the whole session). The recorder finds the text lines
that changed and decides what to cover (``redact/line_reader.py``, with the numpy it has loaded
anyway); only reading pixels into words happens here. It runs at a lower CPU priority, dies with the
recorder, and keeps nothing of the screen between requests.

The first design's whole-frame requests (``scrub``: the bands reader, ``OcrSettings.reader="bands"``)
are still answered, with the screen redaction loaded on the first such request.

    python -m demotrace.capture.ocr_worker SETTINGS_JSON      # what the recorder starts; not for people
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import IO, TYPE_CHECKING

import msgspec

from demotrace.capture.ocr_protocol import (
    BoxTuple,
    OcrReply,
    OcrRequest,
    read_exactly,
    read_message,
    write_message,
)
from demotrace.redact.ocr_settings import OcrError, OcrSettings
from demotrace.redact.tesseract_api import loaded_api

if TYPE_CHECKING:
    from demotrace.redact.scrubber import ScreenScrubber

WORKER_NICENESS = 10
# Line images and Tesseract's own buffers come and go: mapped from 1 MiB up and given back when freed,
# so the worker's resident set stays near what it uses.
WORKER_MMAP_THRESHOLD_BYTES = 1 << 20
WORKER_TRIM_THRESHOLD_BYTES = 1 << 20


def read_words(settings: OcrSettings, request: OcrRequest, pixels: bytes) -> OcrReply:
    """The words of one grey image, as the loaded Tesseract reads them."""
    if request.layout != "L" or request.scale < 1:
        raise ValueError(f"a line to read is grey (L), scale >= 1: not {request.layout}, x{request.scale}")
    if request.width * request.height != len(pixels):
        raise ValueError(f"a {request.width}x{request.height} grey image cannot be {len(pixels)} bytes")
    words = loaded_api(settings).read_bytes(
        pixels, request.width, request.height, request.scale, sparse=request.sparse
    )
    return OcrReply(words=[(word.text, word.box.as_tuple(), word.confidence) for word in words])


def find_frame_boxes(
    settings: OcrSettings, by_monitor: dict[BoxTuple, ScreenScrubber], request: OcrRequest, pixels: bytes
) -> OcrReply:
    """The boxes to paint on a whole frame, found here (the bands reader's requests)."""
    import numpy as np
    from PIL import Image

    from demotrace.redact.scrubber import Grey, ScreenScrubber

    size = (request.width, request.height)
    image: Image.Image | Grey
    if request.layout == "L":  # the recorder's grey frame, read in place (no copy)
        image = np.frombuffer(pixels, np.uint8).reshape(request.height, request.width)
    elif request.layout == "BGRX":
        image = Image.frombuffer("RGB", size, pixels, "raw", "BGRX", 0, 1)
    else:
        image = Image.frombytes("RGB", size, pixels)
    started = time.perf_counter()
    scrubber = by_monitor.get(request.monitor)
    if scrubber is None:
        scrubber = by_monitor[request.monitor] = ScreenScrubber(settings=settings)
    result = scrubber.find(image)
    return OcrReply(
        boxes=[box.as_tuple() for box in result.boxes],
        regions=[region.as_tuple() for region in result.regions],
        ocr_seconds=time.perf_counter() - started,
    )


def serve(settings: OcrSettings, requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until the input ends."""
    by_monitor: dict[BoxTuple, ScreenScrubber] = {}
    while True:
        try:
            request = read_message(requests, OcrRequest)
        except EOFError:
            return
        assert isinstance(request, OcrRequest)
        if request.op == "forget":
            by_monitor.clear()
            write_message(replies, OcrReply())
            continue
        try:
            pixels = read_exactly(requests, request.pixel_bytes)
        except EOFError:
            return  # the recorder died while sending (SIGKILL): nobody is left to answer, nor to tell
        try:
            if request.op == "read":
                reply = read_words(settings, request, pixels)
            else:
                reply = find_frame_boxes(settings, by_monitor, request, pixels)
        except (OcrError, ValueError) as error:
            reply = OcrReply(error=str(error))
        del pixels
        write_message(replies, reply)


def main() -> None:
    from demotrace.memory import keep_heap_flat
    from demotrace.processes import die_with_parent
    from demotrace.threads import name_os_thread

    die_with_parent()  # a SIGKILLed recorder leaves no time to close the pipes
    # Started in a process group of its own; should a SIGINT reach it all the same (kill -INT -PGID of
    # the recorder's group), the recorder still decides when it ends: no traceback, no lost frame.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    name_os_thread("dt-ocr-worker")
    keep_heap_flat(mmap_threshold=WORKER_MMAP_THRESHOLD_BYTES, trim_threshold=WORKER_TRIM_THRESHOLD_BYTES)
    os.nice(WORKER_NICENESS)  # OCR waits; the person's own programs do not
    settings = msgspec.json.decode(sys.argv[1], type=OcrSettings) if len(sys.argv) > 1 else OcrSettings()
    # Replies get a descriptor of their own; anything a library prints goes to stderr, not into them.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(settings, sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
