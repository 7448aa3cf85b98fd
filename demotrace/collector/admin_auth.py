"""Who may use the admin API: a token given at start, or tokens read from a file that can be rotated live.

Rotation: write the new token into the file (one token a line; keep the old line too while tools move
over, then remove it). The file is read again whenever it changes, so a removed token is refused from
the next request on, with no restart. Only SHA-256 digests of the tokens are held in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from pathlib import Path

from demotrace.collector.errors import Unauthorized

MIN_ADMIN_TOKEN_CHARS = 16
MAX_ADMIN_TOKEN_CHARS = 512

log = logging.getLogger(__name__)


class AdminCredentialError(ValueError):
    """The admin token file cannot be used; the message says why."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_token_file(path: Path) -> list[str]:
    """The tokens in ``path``: one a line, blank lines and ``#`` comments skipped, each long enough."""
    try:
        text = path.read_text()
    except OSError as error:
        raise AdminCredentialError(f"cannot read the admin token file {path}: {error}") from error
    tokens = [line.strip() for line in text.splitlines()]
    tokens = [token for token in tokens if token and not token.startswith("#")]
    if not tokens:
        raise AdminCredentialError(f"the admin token file {path} holds no token")
    for token in tokens:
        if not MIN_ADMIN_TOKEN_CHARS <= len(token) <= MAX_ADMIN_TOKEN_CHARS or not token.isprintable():
            raise AdminCredentialError(
                f"admin tokens in {path} must have {MIN_ADMIN_TOKEN_CHARS} to {MAX_ADMIN_TOKEN_CHARS} "
                "printable characters"
            )
    return tokens


class AdminCredentials:
    """The admin tokens in force: a fixed one, and/or the ones in ``token_file`` (re-read on change)."""

    def __init__(self, token: str | None = None, token_file: Path | None = None) -> None:
        self._fixed = [_digest(token)] if token else []
        self.token_file = token_file
        self._file_digests: list[bytes] = []
        self._file_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if token_file is not None:
            self._file_digests = [_digest(t) for t in read_token_file(token_file)]
            self._file_stamp = self._stamp(token_file)

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self.token_file is not None

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int]:
        info = os.stat(path)
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _current_file_digests(self) -> list[bytes]:
        path = self.token_file
        if path is None:
            return []
        with self._lock:
            try:
                stamp = self._stamp(path)
                if stamp != self._file_stamp:
                    self._file_digests = [_digest(t) for t in read_token_file(path)]
                    self._file_stamp = stamp
                    log.warning("admin tokens reloaded from %s", path)
            except (OSError, AdminCredentialError) as error:
                # A file being rewritten, or emptied by mistake: refuse every file token until it is good.
                log.error("admin token file unusable, its tokens are refused: %s", error)
                self._file_digests = []
                self._file_stamp = None
            return list(self._file_digests)

    def check(self, authorization: str | None) -> str:
        """Who is asking, as the audit log names them (``admin:token:<first 8 hex of the token's
        SHA-256>``); Unauthorized unless ``authorization`` is ``Bearer <a token in force>``."""
        if not self.enabled:
            raise Unauthorized("the admin API is off: start the collector with an admin token")
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and len(token) <= MAX_ADMIN_TOKEN_CHARS:
            presented = _digest(token)
            # Every digest compared, in constant time each: no early exit tells which one was close.
            matches = [hmac.compare_digest(presented, known) for known in self._fixed]
            matches += [hmac.compare_digest(presented, known) for known in self._current_file_digests()]
            if any(matches):
                return f"admin:token:{presented.hex()[:8]}"
        raise Unauthorized("missing or wrong admin token (header Authorization: Bearer <admin token>)")
