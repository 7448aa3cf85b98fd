"""What capture writes through: a sink it is handed (the device's spool), never the spool module itself.

The spool satisfies these protocols structurally; capture imports nothing from the device side. A sink
reports a failed write by raising :class:`SinkError` (the spool's error derives from it), which stops the
recording: losing records silently would be worse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from demotrace.model import Record


class SinkError(Exception):
    """A record could not be written; the message says where and why."""


class RecordDropped(SinkError):
    """The sink kept no copy of this record (no room for a frame) and the recording goes on: the
    action is recorded without its frame. The sink counts and reports such drops itself."""


class RecordSink(Protocol):
    """Where the recorder writes batches and frames, each call one durable write."""

    def append(self, records: Sequence[Record], held: bool = False) -> None:
        """Write ``records``; ``held`` ones (frames waiting for their screen scrub) are not offered for
        upload until ``replace_held`` releases them."""
        ...


class HeldRecords(Protocol):
    """The held records a deferred screen scrub reads and releases."""

    def held(self, limit: int = 100) -> list[Record]: ...

    def replace_held(self, record: Record) -> None: ...
