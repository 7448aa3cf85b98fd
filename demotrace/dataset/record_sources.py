"""A device spool as a record store a distributed build reads by id (``ray_stores.RecordSource``), like a
collector's (``collector.reader.CollectorSource``): the driver lists sessions and their batch ids, and
each worker opens the spool itself and reads only its own sessions' batches and frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from demotrace.model import Batch, Frame

if TYPE_CHECKING:
    from demotrace.device.spool import Spool


class SpoolRecordReader:
    """One process's reader of a spool, with the methods a distributed build asks of a store."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def session_batch_ids(self) -> list[tuple[str, str, list[str]]]:
        """(device id, session id, batch record ids in commit order) of every session. The spool's
        columns have no device id: it is read from each session's first batch (one batch a session)."""
        sessions: list[tuple[str, str, list[str]]] = []
        for session_id, record_ids in self._spool.batch_ids_by_session().items():
            first = self._spool.load_batch(record_ids[0])
            sessions.append((first.device_id if first is not None else "", session_id, record_ids))
        return sessions

    def load_batches(self, record_ids: Iterable[str]) -> list[Batch]:
        batches = (self._spool.load_batch(record_id) for record_id in record_ids)
        return [batch for batch in batches if batch is not None]

    def load_frame(self, frame_id: str) -> Frame | None:
        return self._spool.load_frame(frame_id)


@dataclass(frozen=True)
class SpoolRecords:
    """A spool folder and its key path: picklable, opened by each worker for itself."""

    spool_dir: Path
    key_path: Path | None = None

    @contextmanager
    def open(self) -> Iterator[SpoolRecordReader]:
        from demotrace.device.spool import open_spool

        spool = open_spool(self.spool_dir, self.key_path)
        try:
            yield SpoolRecordReader(spool)
        finally:
            spool.close()
