"""Read a collector's data folder back as model records, for dataset building.

Works on a live collector too (SQLite in WAL mode lets it read while uploads land).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import zstandard

from demotrace.collector.store import (
    BLOBS_FOLDER,
    DATABASE_FILE,
    BlobStore,
    LocalBlobStore,
    MetadataStore,
    StoredRecord,
    default_database_url,
)
from demotrace.model import Batch, Frame, Record, decode_record


class ReaderError(Exception):
    """The data folder is missing or inconsistent (a row whose blob is gone)."""


class CollectorReader:
    """Batches and frames stored by a collector, decoded; use as a context manager or call close()."""

    def __init__(
        self, data_dir: Path, database_url: str | None = None, blob_store: BlobStore | None = None
    ) -> None:
        if database_url is None:
            if not (data_dir / DATABASE_FILE).is_file():
                raise ReaderError(f"{data_dir} is not a collector data folder: no {DATABASE_FILE}")
            database_url = default_database_url(data_dir)
        self._metadata = MetadataStore.from_url(database_url, create_schema=False)
        self._blobs = blob_store if blob_store is not None else LocalBlobStore(data_dir / BLOBS_FOLDER)
        self._decompressor = zstandard.ZstdDecompressor()

    def _load(self, row: StoredRecord) -> Record:
        blob = self._blobs.get(row.blob_key)
        if blob is None:
            raise ReaderError(f"record {row.record_id}: blob {row.blob_key} is missing")
        return decode_record(self._decompressor.decompress(blob))

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

    def load_frame(self, frame_id: str) -> Frame | None:
        row = self._metadata.get_record(frame_id)
        if row is None or row.kind != "frame":
            return None
        record = self._load(row)
        return record if isinstance(record, Frame) else None

    def rows(self, kind: str | None = None) -> Iterator[StoredRecord]:
        """The metadata rows themselves (sizes, times, devices) without loading any blob."""
        return self._metadata.records(kind=kind)

    def close(self) -> None:
        self._metadata.close()

    def __enter__(self) -> CollectorReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def iter_batches(data_dir: Path, database_url: str | None = None) -> Iterator[Batch]:
    """Every batch in a collector data folder, ordered by device, session and seq."""
    with CollectorReader(data_dir, database_url) as reader:
        yield from reader.iter_batches()


def load_frame(data_dir: Path, database_url: str | None = None) -> Callable[[str], Frame | None]:
    """A frame loader for a data folder: ``load_frame(data_dir)(frame_id)`` gives the Frame or None."""
    return CollectorReader(data_dir, database_url).load_frame
