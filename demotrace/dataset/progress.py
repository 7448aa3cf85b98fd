"""How a build reports its progress: one small callback, so the CLI can draw bars and a library user
can log, and neither the engines nor the writers know about terminals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BuildProgress:
    """``stage``: "sessions" (``done`` of ``total`` sessions processed, with the ``steps`` kept and
    ``images`` written so far), then one per output as it is written ("trajectories.jsonl",
    "parquet", "webdataset", "adp", "index.html", "report.html"; ``done`` 0 of 1, then 1 of 1)."""

    stage: str
    done: int
    total: int
    steps: int = 0
    images: int = 0


ProgressCallback = Callable[[BuildProgress], None]


def no_progress(_progress: BuildProgress) -> None:
    """The default: say nothing."""
