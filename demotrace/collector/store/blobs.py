"""Blob storage behind one small interface: a local folder by default, object storage for fleets.

Keys are relative, '/'-separated names chosen by the collector (never by a client), such as
``batch/<device_id>/<record_id>.<digest>.zst``. A backend stores bytes under a key and gives them back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from demotrace.files import write_private_file


class BlobKeyError(ValueError):
    """A key that is not a plain relative path (absolute, empty part, '.' or '..')."""


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically: readers see the old blob or the new one, never a part."""
        ...

    def get(self, key: str) -> bytes | None:
        """The blob under ``key``, or None if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the blob under ``key``; no error if it is not there."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with ``prefix``, in sorted order (for audits and orphan sweeps)."""
        ...


def check_key(key: str) -> list[str]:
    """The parts of a valid key; raises BlobKeyError for anything that could leave the store's root."""
    parts = key.split("/")
    if not key or any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
        raise BlobKeyError(f"invalid blob key {key!r}")
    return parts


class LocalBlobStore:
    """Blobs as files under one folder (``DATA/blobs``), written via a temp file and a rename."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, data, temp_prefix=".tmp-")
        _fsync_directory(path.parent)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        found = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".tmp-")
        )
        yield from sorted(key for key in found if key.startswith(prefix))


class MemoryBlobStore:
    """Blobs in a dict: for tests and throw-away collectors."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._blobs[key] = bytes(data)

    def get(self, key: str) -> bytes | None:
        return self._blobs.get(key)

    def exists(self, key: str) -> bool:
        return key in self._blobs

    def delete(self, key: str) -> None:
        self._blobs.pop(key, None)

    def keys(self, prefix: str = "") -> Iterator[str]:
        yield from sorted(key for key in self._blobs if key.startswith(prefix))


def _fsync_directory(directory: Path) -> None:
    # Without this the rename itself may be lost on power failure, leaving a row that points nowhere.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
