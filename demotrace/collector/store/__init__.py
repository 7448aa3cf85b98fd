"""Collector storage: SQL metadata (people, devices, record rows) and blobs (the records themselves,
sealed with their person's data key)."""

from demotrace.collector.store.blobs import BlobKeyError, BlobStore, LocalBlobStore, MemoryBlobStore
from demotrace.collector.store.keyring import KeyRing, MasterKey, load_master_key
from demotrace.collector.store.location import (
    BLOBS_FOLDER,
    CollectorLocation,
    LocationError,
    open_blob_store,
)
from demotrace.collector.store.metadata import (
    DATABASE_FILE,
    MetadataStore,
    StoredRecord,
    create_metadata_engine,
    default_database_url,
)
from demotrace.collector.store.s3 import S3BlobStore

__all__ = [
    "BLOBS_FOLDER",
    "DATABASE_FILE",
    "BlobKeyError",
    "BlobStore",
    "CollectorLocation",
    "KeyRing",
    "LocalBlobStore",
    "LocationError",
    "MasterKey",
    "MemoryBlobStore",
    "MetadataStore",
    "S3BlobStore",
    "StoredRecord",
    "create_metadata_engine",
    "default_database_url",
    "load_master_key",
    "open_blob_store",
]
