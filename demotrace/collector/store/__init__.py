"""Collector storage: SQL metadata (devices, record rows) and blobs (the records themselves)."""

from demotrace.collector.store.blobs import BlobKeyError, BlobStore, LocalBlobStore, MemoryBlobStore
from demotrace.collector.store.metadata import (
    DATABASE_FILE,
    MetadataStore,
    StoredRecord,
    create_metadata_engine,
    default_database_url,
)

BLOBS_FOLDER = "blobs"

__all__ = [
    "BLOBS_FOLDER",
    "DATABASE_FILE",
    "BlobKeyError",
    "BlobStore",
    "LocalBlobStore",
    "MemoryBlobStore",
    "MetadataStore",
    "StoredRecord",
    "create_metadata_engine",
    "default_database_url",
]
