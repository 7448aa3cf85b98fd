"""Encryption at rest on the collector: every blob is sealed with its person's data key (AES-256-GCM),
and each data key is stored in the database wrapped by the collector's master key (envelope encryption).

Deleting a person destroys their data key first (crypto-shredding): every copy of their blobs, in the
object store, a backup or a snapshot, is unreadable from then on, before the blobs themselves go.

The master key comes from ``--master-key FILE`` (32 random bytes, or their hex), or from the environment
(``DEMOTRACE_MASTER_KEY``: hex, as a KMS-backed secret store would inject it), or from ``DATA/master.key``,
created 0600 on the first start. Every collector worker and every dataset build of one fleet must use the
same master key; each wrapped key records which master key wrapped it, so a wrong one is named, not
mistaken for corruption.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from demotrace.collector.store.tables import DataKeyEntry

MASTER_KEY_FILE = "master.key"
MASTER_KEY_ENV = "DEMOTRACE_MASTER_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_MAGIC = b"DTS1"  # a sealed blob starts with this; zstd frames (blobs from before) never do
_WRAP_CONTEXT = b"demotrace data key\0"


_KEY_BY_PERSON = select(DataKeyEntry.__table__).where(
    DataKeyEntry.__table__.c.person_id == bindparam("person_id")
)


class KeyRingError(Exception):
    """Base of the key ring's errors."""


class MasterKeyError(KeyRingError):
    """The master key is missing, malformed, or not the one that wrapped the stored data keys."""


class DataKeyDestroyed(KeyRingError):
    """The person's data key is gone (their data was deleted): their blobs cannot be opened any more."""


class SealError(KeyRingError):
    """A sealed blob that does not authenticate: corrupted, or moved to another key."""


@dataclass(frozen=True, repr=False)
class MasterKey:
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise MasterKeyError(f"a master key has {KEY_BYTES} bytes, not {len(self.key)}")

    @property
    def key_id(self) -> str:
        """A short fingerprint (not the key): names the master key in errors and in the key table."""
        return hashlib.sha256(b"demotrace master key id\0" + self.key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id})"


def _parse_key(raw: bytes, source: str) -> MasterKey:
    text = raw.strip()
    if len(raw) == KEY_BYTES:
        return MasterKey(raw)
    try:
        return MasterKey(bytes.fromhex(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError) as error:
        raise MasterKeyError(f"{source}: expected {KEY_BYTES} bytes or {2 * KEY_BYTES} hex digits") from error


def load_master_key(path: Path | None = None, data_dir: Path | None = None) -> MasterKey:
    """The master key from ``path``, else ``$DEMOTRACE_MASTER_KEY``, else ``DATA/master.key`` (made on
    first use, 0600). Raises MasterKeyError when none of them can give one."""
    if path is not None:
        try:
            return _parse_key(path.read_bytes(), str(path))
        except FileNotFoundError as error:
            raise MasterKeyError(f"master key file {path} does not exist") from error
    from_env = os.environ.get(MASTER_KEY_ENV)
    if from_env:
        return _parse_key(from_env.encode(), MASTER_KEY_ENV)
    if data_dir is None:
        raise MasterKeyError(f"no master key: give --master-key FILE or set {MASTER_KEY_ENV}")
    default = data_dir / MASTER_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(default, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _parse_key(default.read_bytes(), str(default))
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return MasterKey(key)


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(SEALED_MAGIC)


@dataclass
class KeyRing:
    """Data keys per person, wrapped by ``master`` in the ``data_keys`` table; seals and opens blobs.

    ``recheck``: look the wrapped key up on every use (a collector: a key destroyed by another worker
    must stop being used at once); off for a reader, which may keep keys for its lifetime.
    """

    engine: Engine
    master: MasterKey
    recheck: bool = True
    clock: Callable[[], float] = time.time
    _cache: dict[str, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _wrap(self, person_id: str, data_key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.master.key).encrypt(nonce, data_key, _WRAP_CONTEXT + person_id.encode())

    def _unwrap(self, entry: DataKeyEntry) -> bytes:
        if entry.master_key_id != self.master.key_id:
            raise MasterKeyError(
                f"the data key of person {entry.person_id} was wrapped by master key {entry.master_key_id}; "
                f"this collector has {self.master.key_id}: give it the fleet's master key"
            )
        wrapped = entry.wrapped_key
        try:
            return AESGCM(self.master.key).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_CONTEXT + entry.person_id.encode()
            )
        except InvalidTag as error:
            raise MasterKeyError(f"the data key of person {entry.person_id} does not unwrap") from error

    def data_key(self, person_id: str, create: bool = False) -> bytes:
        """The person's data key; a new one if they have none and ``create``; else DataKeyDestroyed."""
        with self._lock:
            cached = self._cache.get(person_id)
        if cached is not None and not self.recheck:
            return cached[1]
        # Core, not the ORM: this runs for every record stored, and the ORM session costs more than the
        # primary-key lookup itself.
        with self.engine.connect() as connection:
            row = connection.execute(_KEY_BY_PERSON, {"person_id": person_id}).one_or_none()
        entry = None if row is None else DataKeyEntry(**row._asdict())
        if entry is None:
            if not create:
                with self._lock:
                    self._cache.pop(person_id, None)
                raise DataKeyDestroyed(f"person {person_id} has no data key: their data was deleted")
            entry = self._create(person_id)
        if cached is not None and cached[0] == entry.wrapped_key:
            return cached[1]
        key = self._unwrap(entry)
        with self._lock:
            self._cache[person_id] = (entry.wrapped_key, key)
        return key

    def _create(self, person_id: str) -> DataKeyEntry:
        entry = DataKeyEntry(
            person_id=person_id,
            wrapped_key=self._wrap(person_id, secrets.token_bytes(KEY_BYTES)),
            master_key_id=self.master.key_id,
            created_at=self.clock(),
        )
        try:
            with self._sessions.begin() as session:
                session.add(entry)
            return entry
        except IntegrityError:
            # Another worker made this person's key at the same moment: use theirs.
            with self._sessions() as session:
                existing = session.scalar(select(DataKeyEntry).where(DataKeyEntry.person_id == person_id))
            if existing is None:  # pragma: no cover - destroyed in between: the person was just deleted
                raise DataKeyDestroyed(f"person {person_id}'s data key was destroyed meanwhile") from None
            return existing

    def seal(self, person_id: str, blob_key: str, data: bytes) -> bytes:
        """``data`` sealed with the person's data key (made on their first blob), bound to ``blob_key``:
        a sealed blob copied under another key does not open."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        key = self.data_key(person_id, create=True)
        return SEALED_MAGIC + nonce + AESGCM(key).encrypt(nonce, data, blob_key.encode())

    def open(self, person_id: str, blob_key: str, blob: bytes) -> bytes:
        """The plain bytes of a blob (blobs stored before encryption are returned as they are)."""
        if not is_sealed(blob):
            return blob
        body = blob[len(SEALED_MAGIC) :]
        key = self.data_key(person_id)
        try:
            return AESGCM(key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], blob_key.encode())
        except InvalidTag as error:
            raise SealError(f"blob {blob_key} does not authenticate under its person's key") from error
