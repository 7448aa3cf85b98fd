"""The recorder's heap gives back its free holes: a child process frees half of many heap blocks (holes
between blocks in use, which the trim threshold never returns) and its resident set falls once
``give_back_free_heap`` runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
from demotrace.memory import give_back_free_heap, keep_heap_flat

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

keep_heap_flat()
blocks = [bytearray(b"x" * 200_000) for _ in range(200)]  # ~40 MB on the heap, below the mmap threshold
del blocks[::2]  # ~20 MB of holes between blocks still in use
before = anon_kib()
give_back_free_heap()
print(before, anon_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc")
def test_free_holes_in_the_heap_stop_being_resident() -> None:
    output = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    before, after = (int(value) for value in output.split())
    assert before - after > 15_000  # KiB: most of the ~20 MB of holes went back
