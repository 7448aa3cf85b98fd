"""Keep the agent's resident memory flat: fewer per-thread malloc heaps.

A 1080p frame passes through several 6-8 MB buffers (the grab, RGB pixels, the encoder's input) on
three threads. glibc gives every thread its own heap (up to 8 per core), and freed frame buffers then
linger in several of them; two heaps are plenty for this agent's threads.

Measured with bench/record.py and a grab micro-benchmark, and not used:
- a fixed mmap threshold (every large block an mmap of its own, returned on free) flattened the
  resident set but tripled a grab's CPU (page faults on every buffer);
- Pillow's block cache (``set_blocks_max``) made grabs cheaper but its kept blocks made the resident
  set climb through the session (+80 MB over two minutes with 2 to 6 blocks kept).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENA_MAX = 2


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
    mallopt(_M_ARENA_MAX, ARENA_MAX)
