"""Where a build's frames are, as a small picklable description each worker process opens for itself.

A spool or collector reader holds an open database connection and cannot be pickled (nor carried
across a fork), so worker processes — the local engine's pool and Ray's workers alike — get a
``FrameSource`` and open it once each: a collector data folder, a spool folder and its key path, or
a frame map held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from demotrace.model import Frame

if TYPE_CHECKING:
    from demotrace.collector.store import CollectorLocation

FrameLoader = Callable[[str], Frame | None]


@runtime_checkable
class FrameSource(Protocol):
    """A picklable description of where frames are; ``open()`` gives a loader for one worker."""

    def open(self) -> AbstractContextManager[FrameLoader]: ...


@dataclass(frozen=True)
class CollectorFrames:
    """Frames in a collector's data folder (its SQLite database, or ``database_url``, and blob folder),
    or wherever ``location`` says (a fleet's database, S3 blobs and master key)."""

    data_dir: Path | None = None
    database_url: str | None = None
    location: CollectorLocation | None = None

    @contextmanager
    def open(self) -> Iterator[FrameLoader]:
        from demotrace.collector.reader import CollectorReader

        with CollectorReader(self.data_dir, self.database_url, location=self.location) as reader:
            yield reader.load_frame


@dataclass(frozen=True)
class SpoolFrames:
    """Frames in a device spool (decrypted with the key in ``key_path``, by default the user's)."""

    spool_dir: Path
    key_path: Path | None = None

    @contextmanager
    def open(self) -> Iterator[FrameLoader]:
        from demotrace.device.spool import open_spool

        spool = open_spool(self.spool_dir, self.key_path)
        try:
            yield spool.load_frame
        finally:
            spool.close()


@dataclass(frozen=True)
class FrameMap:
    """Frames held in memory, copied to every worker: for small builds (tests, benchmarks)."""

    frames: Mapping[str, Frame]

    def open(self) -> AbstractContextManager[FrameLoader]:
        return nullcontext(self.frames.get)
