"""Unix sockets that only this OS user can reach: a 0700 folder, a 0600 socket, and the peer's
credentials as the kernel saw them at connect (SO_PEERCRED). Used by the control socket and the
browser bridge."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from demotrace.threads import name_os_thread

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700, or check an existing one is ours and close it to others; raises
    PermissionError if it belongs to another user."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def peer_credentials(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket, as the kernel saw it at connect."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _gid = _PEERCRED.unpack(creds)
    return int(pid), int(uid)


def peer_uid(conn: socket.socket) -> int:
    return peer_credentials(conn)[1]


def bind_private(path: Path) -> socket.socket:
    """A listening Unix stream socket at ``path``, created 0600 (never open to others, not even
    briefly), in a private folder. Raises OSError (PermissionError for a folder of another user)."""
    ensure_private_dir(path.parent)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old_umask)
    listener.listen(16)
    return listener


def remove_stale_socket(path: Path) -> bool:
    """Make way for a new socket at ``path``: True if there is none, or it was left by a process that
    died (removed); False if a live process still answers on it."""
    if not path.exists() and not path.is_symlink():
        return True
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return True
    finally:
        probe.close()
    return False


class PrivateListener:
    """A Unix socket at ``path`` that only this user can reach, with one accept thread (blocked in
    accept, no polling) that hands each connection to ``serve`` on a thread of its own."""

    def __init__(self, path: Path, serve: Callable[[socket.socket], None], name: str) -> None:
        self.path = path
        self._serve = serve
        self._name = name
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        """Listen; FileExistsError if a live process answers on ``path``, other OSErrors as they come
        (PermissionError: a folder of another user)."""
        ensure_private_dir(self.path.parent)
        if not remove_stale_socket(self.path):
            raise FileExistsError(f"another process already answers on {self.path}")
        listener = bind_private(self.path)
        self._listener = listener
        # The thread gets the listener itself: a stop() right after start() may clear self._listener first.
        self._thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not on Linux.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept_loop(self, listener: socket.socket) -> None:
        name_os_thread()
        while not self.stopping.is_set():
            try:
                conn, _address = listener.accept()
            except OSError:
                if not self.stopping.is_set():
                    log.exception("%s: accept failed", self._name)
                return
            # One thread per connection: a slow or silent client never holds up the next one.
            threading.Thread(target=self._serve, args=(conn,), name=f"{self._name}-conn", daemon=True).start()
