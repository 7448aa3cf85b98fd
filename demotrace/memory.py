"""Frame-sized buffers are reused from the heap, not mapped afresh for every frame.

A 1080p frame passes through several 6-8 MB buffers (the grab, RGB pixels, the encoder's input) on
three threads. glibc maps every block above its mmap threshold on its own and unmaps it on free, so
each frame paid ~2,000 page faults per buffer: a grab plus its RGB copy took 16 ms of CPU instead of
3.5 ms. A fixed threshold above frame size (and a trim threshold above that) keeps freed frame
buffers in the heap for the next frame: the resident set stays at the working set of a few frames and
does not grow with the session. Two arenas are plenty for this agent's threads and bound how many
heaps can hold such buffers at once.

Measured with bench/record.py and a grab micro-benchmark, and not used:
- a low mmap threshold (every large block its own mapping, returned on free): flat, but 3x the CPU;
- Pillow's block cache (``set_blocks_max``): cheaper grabs, but the resident set climbed through the
  session (+80 MB over two minutes with 2 to 6 blocks kept).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

ARENA_MAX = 2
MMAP_THRESHOLD_BYTES = 4 << 20
TRIM_THRESHOLD_BYTES = 8 << 20


def keep_heap_flat() -> None:
    """Tune glibc malloc for this process; call early, before threads start. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    library = ctypes.util.find_library("c")
    if library is None:
        return
    try:
        mallopt = ctypes.CDLL(library).mallopt
    except (OSError, AttributeError):
        return  # musl and other C libraries have no mallopt
    for parameter, value in (
        (_M_ARENA_MAX, ARENA_MAX),
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    ):
        mallopt(parameter, value)
