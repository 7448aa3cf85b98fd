"""Dataset lineage: the manifest of the sessions a dataset was built from, and the check that tells
whether any of them has since been deleted at the source (a person's deletion, an exemption, retention).

OUT/manifest.json lists each source session by the same keyed pseudonyms the dataset uses (never a raw
id: the folder stays shareable) with the number of batches the build read, and when the build began
reading (``as_of``). Checking compares that with what the collector holds now: a session with no
batches left was deleted; one with fewer batches received by ``as_of`` than the build read lost some
(retention). Both make the dataset stale: a rebuild reads the source again and leaves them out.

Pure but for reading and writing the manifest file: the caller hands in the source's sessions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from demotrace.dataset.privacy import Pseudonyms
from demotrace.model import Batch

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


class ManifestError(Exception):
    """No manifest, or one this version cannot read."""


class ManifestSession(msgspec.Struct, frozen=True):
    device: str  # pseudonyms, as in the dataset's rows
    session: str
    batches: int


class Manifest(msgspec.Struct, frozen=True):
    version: int
    built_at: float
    as_of: float  # records the source received after this were not there for the build
    source: dict[str, str]  # where the data came from ({"kind": "collector" | "spool" | ...}), no secrets
    sessions: list[ManifestSession]


@dataclass(frozen=True)
class BuildSource:
    """What a build records about its input: where it is (for people) and from when (for the check)."""

    description: Mapping[str, str]
    as_of: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SourceSession:
    """A session as the source holds it now: batches received by the manifest's ``as_of``."""

    device_id: str
    session_id: str
    batches: int


@dataclass(frozen=True)
class LineageReport:
    sessions: int  # in the manifest
    deleted: list[ManifestSession]  # no batch left at the source
    reduced: list[ManifestSession]  # fewer batches than the build read

    @property
    def stale(self) -> bool:
        return bool(self.deleted or self.reduced)


class LineageRecorder:
    """Counts the distinct batches of each (device, session) as they stream into a build."""

    def __init__(self) -> None:
        self._batches: dict[tuple[str, str], set[str]] = {}

    def observe(self, records: Iterable[Batch]) -> Iterator[Batch]:
        for batch in records:
            self._batches.setdefault((batch.device_id, batch.session_id), set()).add(batch.batch_id)
            yield batch

    def add(self, device_id: str, session_id: str, batch_ids: Iterable[str]) -> None:
        self._batches.setdefault((device_id, session_id), set()).update(batch_ids)

    def sessions(self) -> list[tuple[str, str]]:
        """(device id, session id) of every session seen, headers or not."""
        return list(self._batches)

    def manifest(self, source: BuildSource, pseudonyms: Pseudonyms) -> Manifest:
        sessions = sorted(
            (
                ManifestSession(pseudonyms.device(device), pseudonyms.session(session), len(batch_ids))
                for (device, session), batch_ids in self._batches.items()
            ),
            key=lambda entry: (entry.device, entry.session),
        )
        return Manifest(MANIFEST_VERSION, time.time(), source.as_of, dict(source.description), sessions)


def write_manifest(out_dir: Path, manifest: Manifest) -> Path:
    path = out_dir / MANIFEST_FILE
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
    os.replace(partial, path)
    return path


def read_manifest(out_dir: Path) -> Manifest:
    path = out_dir / MANIFEST_FILE
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
    except FileNotFoundError as error:
        raise ManifestError(
            f"{out_dir} has no {MANIFEST_FILE}: it was built before manifests; rebuild it"
        ) from error
    except msgspec.DecodeError as error:
        raise ManifestError(f"{path} is not a dataset manifest: {error}") from error
    if manifest.version != MANIFEST_VERSION:
        raise ManifestError(
            f"{path} has manifest version {manifest.version}; this demotrace reads {MANIFEST_VERSION}"
        )
    return manifest


def check_lineage(
    manifest: Manifest, pseudonyms: Pseudonyms, current: Iterable[SourceSession]
) -> LineageReport:
    """Which of the manifest's sessions the source no longer has whole (``current``: its sessions now,
    counting only batches received by ``manifest.as_of``)."""
    now = {
        (pseudonyms.device(entry.device_id), pseudonyms.session(entry.session_id)): entry.batches
        for entry in current
    }
    deleted: list[ManifestSession] = []
    reduced: list[ManifestSession] = []
    for entry in manifest.sessions:
        left = now.get((entry.device, entry.session), 0)
        if left == 0:
            deleted.append(entry)
        elif left < entry.batches:
            reduced.append(entry)
    return LineageReport(len(manifest.sessions), deleted, reduced)
