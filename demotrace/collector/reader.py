"""Read a collector's data back as model records, for dataset building: from a data folder, or from
its database URL and blob URL (PostgreSQL + S3) with the fleet's master key.

Works on a live collector too (SQLite in WAL mode lets it read while uploads land). A record whose
person's data key was destroyed (their data is being deleted) is skipped, like a deleted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zstandard

from demotrace.collector.store import (
    BlobStore,
    CollectorLocation,
    KeyRing,
    LocationError,
    MetadataStore,
    StoredRecord,
)
from demotrace.collector.store.keyring import DataKeyDestroyed, KeyRingError
from demotrace.collector.store.metadata import SessionRows
from demotrace.model import Batch, Frame, Record, decode_record


class ReaderError(Exception):
    """The data folder is missing or inconsistent (a row whose blob is gone), or a key is wrong."""


class CollectorReader:
    """Batches and frames stored by a collector, decoded; use as a context manager or call close()."""

    def __init__(
        self,
        data_dir: Path | None = None,
        database_url: str | None = None,
        blob_store: BlobStore | None = None,
        *,
        location: CollectorLocation | None = None,
    ) -> None:
        if location is None:
            location = CollectorLocation(data_dir=data_dir, database_url=database_url)
        try:
            location.check_readable()
            self._metadata = MetadataStore.from_url(location.database(), migrate=False)
            self._blobs = blob_store if blob_store is not None else location.blobs()
            self._keys = KeyRing(self._metadata.engine, location.master_key(), recheck=False)
        except (LocationError, KeyRingError) as error:
            raise ReaderError(str(error)) from error
        self.location = location
        self._decompressor = zstandard.ZstdDecompressor()
        self.skipped_deleted = 0  # records whose person's key was destroyed while we read

    def _load(self, row: StoredRecord) -> Record | None:
        blob = self._blobs.get(row.blob_key)
        if blob is None:
            raise ReaderError(f"record {row.record_id}: blob {row.blob_key} is missing")
        try:
            plain = self._keys.open(row.person_id, row.blob_key, blob)
        except DataKeyDestroyed:
            self.skipped_deleted += 1
            return None
        except KeyRingError as error:
            raise ReaderError(f"record {row.record_id}: {error}") from error
        return decode_record(self._decompressor.decompress(plain))

    def iter_batches(self, device_id: str | None = None, session_id: str | None = None) -> Iterator[Batch]:
        """Batches ordered by device, session and seq."""
        for row in self._metadata.records(kind="batch", device_id=device_id, session_id=session_id):
            record = self._load(row)
            if isinstance(record, Batch):
                yield record

    def iter_frames(self, device_id: str | None = None, session_id: str | None = None) -> Iterator[Frame]:
        """Frames ordered by device, session and time."""
        for row in self._metadata.records(kind="frame", device_id=device_id, session_id=session_id):
            record = self._load(row)
            if isinstance(record, Frame):
                yield record

    def load_batches(self, record_ids: Iterable[str]) -> list[Batch]:
        """These batches by record id, in the order given (ids no longer stored are left out)."""
        ids = list(record_ids)
        rows = {row.record_id: row for row in self._metadata.get_records(ids)}
        batches: list[Batch] = []
        for record_id in ids:
            row = rows.get(record_id)
            record = self._load(row) if row is not None and row.kind == "batch" else None
            if isinstance(record, Batch):
                batches.append(record)
        return batches

    def load_frame(self, frame_id: str) -> Frame | None:
        row = self._metadata.get_record(frame_id)
        if row is None or row.kind != "frame":
            return None
        record = self._load(row)
        return record if isinstance(record, Frame) else None

    def rows(self, kind: str | None = None) -> Iterator[StoredRecord]:
        """The metadata rows themselves (sizes, times, devices) without loading any blob."""
        return self._metadata.records(kind=kind)

    def session_batch_ids(self) -> list[tuple[str, str, list[str]]]:
        """(device id, session id, batch record ids in seq order) of every session, from the metadata
        alone: what a distributed build hands out instead of the records themselves."""
        sessions: dict[tuple[str, str], list[str]] = {}
        for row in self._metadata.records(kind="batch"):
            sessions.setdefault((row.device_id, row.session_id), []).append(row.record_id)
        return [(device, session, ids) for (device, session), ids in sessions.items()]

    def sessions(self, received_by: float | None = None) -> list[SessionRows]:
        """Every stored (device, session) with its record counts, without loading any blob."""
        return self._metadata.sessions(received_by)

    def close(self) -> None:
        self._metadata.close()

    def __enter__(self) -> CollectorReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class CollectorSource:
    """A picklable handle on a collector's stores: each dataset worker opens its own reader from it
    (``demotrace.dataset.distributed`` hands out record ids, and workers read the records)."""

    location: CollectorLocation

    @contextmanager
    def open(self) -> Iterator[CollectorReader]:
        with CollectorReader(location=self.location) as reader:
            yield reader


def iter_batches(data_dir: Path, database_url: str | None = None) -> Iterator[Batch]:
    """Every batch in a collector data folder, ordered by device, session and seq."""
    with CollectorReader(data_dir, database_url) as reader:
        yield from reader.iter_batches()


def load_frame(data_dir: Path, database_url: str | None = None) -> Callable[[str], Frame | None]:
    """A frame loader for a data folder: ``load_frame(data_dir)(frame_id)`` gives the Frame or None."""
    return CollectorReader(data_dir, database_url).load_frame
