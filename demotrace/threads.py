"""Name the calling thread for the operating system, so ``top -H``, ``ps -L`` and /proc show which
part of the agent uses the CPU (and bench/record.py can tell the recorder from its screen OCR).

Python 3.11 names threads for itself only; Linux takes a 15-byte name per thread (``prctl``).
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from collections.abc import Callable

_PR_SET_NAME = 15
_MAX_NAME_BYTES = 15
# Thread names in this project start with it; the OS name keeps the part that says what it does.
_PROJECT_PREFIX = "demotrace-"
OS_NAME_PREFIX = "dt-"


def os_thread_name(name: str) -> str:
    """The name the OS is given for a Python thread name: "demotrace-encode" → "dt-encode"."""
    short = OS_NAME_PREFIX + name.removeprefix(_PROJECT_PREFIX) if name.startswith(_PROJECT_PREFIX) else name
    return short.encode()[:_MAX_NAME_BYTES].decode(errors="ignore")


@functools.cache
def libc_prctl() -> Callable[..., int] | None:
    """The C library's ``prctl`` (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # the process's own symbols (libc's): find_library would start ldconfig, a child process
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread its OS name (its Python name by default); a no-op where unsupported."""
    prctl = libc_prctl()
    if prctl is None:
        return
    chosen = os_thread_name(name or threading.current_thread().name)
    prctl(_PR_SET_NAME, ctypes.c_char_p(chosen.encode()), 0, 0, 0)
