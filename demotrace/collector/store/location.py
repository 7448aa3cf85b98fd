"""Where a collector's data lives: a database URL, a blob URL and a master key, or a data folder that
holds all three by default (``collector.db``, ``blobs/``, ``master.key``). Picklable, so dataset workers
open the stores themselves from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from demotrace.collector.store.blobs import BlobStore, LocalBlobStore
from demotrace.collector.store.keyring import MasterKey, load_master_key
from demotrace.collector.store.metadata import DATABASE_FILE, default_database_url
from demotrace.collector.store.s3 import S3_SCHEME, S3BlobStore

BLOBS_FOLDER = "blobs"


class LocationError(ValueError):
    """The location is incomplete (no folder and no URLs) or names something that is not there."""


def open_blob_store(url: str | None, data_dir: Path | None) -> BlobStore:
    """``s3://bucket/prefix`` → S3; ``file:///path`` or a plain path → that folder; None → DATA/blobs."""
    if url is None:
        if data_dir is None:
            raise LocationError(
                "no blob store: give a blob URL (s3://bucket/prefix or a folder) or a data folder"
            )
        return LocalBlobStore(data_dir / BLOBS_FOLDER)
    scheme = urlsplit(url).scheme
    if scheme == S3_SCHEME:
        return S3BlobStore.from_url(url)
    if scheme == "file":
        return LocalBlobStore(Path(urlsplit(url).path))
    if scheme:
        raise LocationError(f"unknown blob store URL {url!r}: use s3://bucket/prefix or a folder")
    return LocalBlobStore(Path(url))


def public_database_url(database_url: str) -> str:
    """The URL without its password: safe to print and to write into a dataset manifest."""
    return make_url(database_url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class CollectorLocation:
    data_dir: Path | None = None
    database_url: str | None = None
    blobs_url: str | None = None
    master_key_path: Path | None = None

    def database(self) -> str:
        if self.database_url is not None:
            return self.database_url
        if self.data_dir is None:
            raise LocationError("no database: give a database URL or a collector data folder")
        return default_database_url(self.data_dir)

    def check_readable(self) -> None:
        """Raise LocationError if a default SQLite database is not there (a reader must not make one)."""
        folder = self.data_dir
        if self.database_url is None and folder is not None and not (folder / DATABASE_FILE).is_file():
            raise LocationError(f"{self.data_dir} is not a collector data folder: no {DATABASE_FILE}")

    def blobs(self) -> BlobStore:
        return open_blob_store(self.blobs_url, self.data_dir)

    def master_key(self) -> MasterKey:
        return load_master_key(self.master_key_path, self.data_dir)

    def describe(self) -> dict[str, str]:
        """Where the data came from, without secrets (for manifests and messages)."""
        described = {"database": public_database_url(self.database())}
        described["blobs"] = self.blobs_url or str((self.data_dir or Path()) / BLOBS_FOLDER)
        if self.data_dir is not None:
            described["data_dir"] = str(self.data_dir.resolve())
        return described
