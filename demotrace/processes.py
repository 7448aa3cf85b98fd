"""Child processes that never outlive their parent and never see the terminal's Ctrl+C.

A terminal sends SIGINT to its whole foreground process group. A child in that group stops at the same
moment as its parent, in no particular order: the collector could die before the recorder has uploaded
its last records, and a Python worker prints a ``KeyboardInterrupt`` traceback. So every long-lived child
of ours starts in a process group of its own, and its parent stops it when and how it chooses. If the
parent dies without doing so (SIGKILL, a crash), Linux sends the child SIGTERM (``PR_SET_PDEATHSIG``),
which every child of ours treats as "stop cleanly".
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from demotrace.threads import libc_prctl

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to send this process SIGTERM when its parent ends; ends now if it already has.

    ``parent_pid`` is the parent this process was started by: if it is gone already (it died between
    the fork and this call), no death signal will come, so we send it ourselves.
    """
    prctl = libc_prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def child_options() -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments for a child of ours: its own process group (the terminal's
    Ctrl+C reaches only us) and a death signal when we end. The death signal survives ``exec``.

    The death signal follows the *thread* that started the child: start children from a thread that
    lives as long as they should (the main thread).
    """
    parent = os.getpid()

    def in_child() -> None:
        die_with_parent(parent)

    preexec: Callable[[], None] = in_child
    return {"process_group": 0, "preexec_fn": preexec}
