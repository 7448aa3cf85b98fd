"""A heap that stays the size of what is in use: frame-sized blocks are mapped, not kept in the heap.

Frames no longer pass through the heap: each grab is copied from the X server's shared memory into a
reused mapped buffer (capture/grab.py). What is left of large allocations is rare (a key frame's
Pillow image, a big delta's tiles), so blocks from 4 MiB up are mapped on their own
and unmapped when freed, and free heap above 8 MiB is given back: on bench/record.py the heap stayed at
~25 MB (15 in use) where it had grown to 88 MB (56 in use) with frames on it. Two arenas are plenty
for this agent's threads.

Measured before, and not used:
- frames on the heap with a 16 MiB mmap threshold (buffers reused by malloc): cheap grabs, but the
  holes they left made the heap grow by a frame every minute or two;
- frames mapped afresh for every grab: flat, but ~2,000 page faults (7 ms of CPU) per 8 MB frame;
- Pillow's block cache (``set_blocks_max``): the resident set climbed through the session.
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

ARENA_MAX = 2
MMAP_THRESHOLD_BYTES = 4 << 20  # below a 1080p frame (8 MB), above the per-frame temporaries
TRIM_THRESHOLD_BYTES = 8 << 20  # free heap kept before any is given back


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # The process's own symbols, the C library's among them: ctypes.util.find_library would start
    # ldconfig, a child process (2.3 MiB, counted in bench/record.py's tree) in the recorder and its worker.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def keep_heap_flat(
    mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES
) -> None:
    """Tune glibc malloc for this process; call early, before threads start. A no-op elsewhere."""
    libc = _libc()
    try:
        mallopt = libc.mallopt if libc is not None else None
    except AttributeError:
        return  # musl and other C libraries have no mallopt
    if mallopt is None:
        return
    for parameter, value in (
        (_M_ARENA_MAX, ARENA_MAX),
        (_M_MMAP_THRESHOLD, mmap_threshold),
        (_M_TRIM_THRESHOLD, trim_threshold),
    ):
        mallopt(parameter, value)


def give_back_free_heap() -> None:
    """Return the heap's free pages to the system now, the holes between blocks in use included (the
    trim threshold only gives back free space at the heap's top). A no-op outside glibc.

    Measured in the recorder during bench/record.py: its main heap held 6.5 MB free in 88 holes beside
    ~17 MB in use, all of it resident; called after each frame (a few page faults when a hole is reused)."""
    libc = _libc()
    try:
        trim = libc.malloc_trim if libc is not None else None
    except AttributeError:
        return
    if trim is not None:
        trim(0)
