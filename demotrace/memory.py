"""Keep the agent's resident memory flat and its frame buffers cheap.

A 1080p frame passes through several 6-8 MB buffers (the grab, RGB pixels, OCR canvases, encoder
input) on three threads. Measured with bench/record.py and a grab micro-benchmark:

- Pillow allocates every image afresh by default: each 6 MB frame was a new mmap, and touching its
  pages cost more than decoding the pixels (~17 ms per grab instead of ~3 ms). Keeping a few freed
  blocks for reuse fixes both the time and the churn.
- glibc gives every thread its own heap (up to 8 per core); two are plenty for this agent's threads
  and keep freed frame buffers from lingering in several heaps at once.
- Forcing large blocks to mmap (a fixed mmap threshold) flattened the resident set further but
  tripled the CPU of a grab (page faults on every buffer): not used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENA_MAX = 2
# Freed Pillow blocks kept for reuse: a frame is in flight on at most a few threads at a time.
PILLOW_BLOCKS_KEPT = 6


def keep_heap_flat() -> None:
    """Tune the allocators for this process; call early, before threads start. Harmless where an
    allocator is not the expected one (not glibc: the malloc part is skipped)."""
    from PIL import _imaging

    _imaging.set_blocks_max(PILLOW_BLOCKS_KEPT)
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
