"""The control socket server: answers the employee's tools (CLI, tray) in the recorder's process.

``ControlServer`` listens on a Unix stream socket that only this user can reach: a 0700 folder, a 0600
socket, and a SO_PEERCRED check of every connection's uid. ``LocalControl`` starts and stops it together
with the pause controller. The line protocol is in ``control_protocol``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demotrace.device.control_protocol import (
    MAX_REQUEST_BYTES,
    ControlError,
    default_socket_path,
    message_line,
)
from demotrace.device.pause import PauseController, default_pause_state_file, pause_minutes_for
from demotrace.policy import CaptureGate
from demotrace.threads import name_os_thread

MAX_TASK_TEXT_CHARS = 500
# A client that connects and then says nothing must not hold a handler thread forever.
CLIENT_IDLE_TIMEOUT = 30.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

log = logging.getLogger(__name__)


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700, or check an existing one is ours and closed to others."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise ControlError(f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (as the kernel saw it at connect)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(creds)
    return int(uid)


def _answer(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(message_line(message))


def _read_line(reader: Any) -> bytes | None:
    line: bytes = reader.readline(MAX_REQUEST_BYTES + 1)
    if not line:
        return None
    if len(line) > MAX_REQUEST_BYTES:
        raise ControlError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    return line


def _task_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlError("a task needs a description: say what you are doing, in a few words")
    text = " ".join(value.split())
    if len(text) > MAX_TASK_TEXT_CHARS:
        raise ControlError(f"task text is longer than {MAX_TASK_TEXT_CHARS} characters")
    # The task text goes into the recording: the typed-text safeguards apply to it as to any typing.
    from demotrace.redact.text import redact_text

    return redact_text(text).text


class ControlServer:
    """Serves the control protocol on a Unix socket, one blocking accept thread (no polling).

    ``on_task_marker(kind, text)`` receives ("task_start", text) and ("task_end", ""); the recorder's
    ``Recorder.mark`` fits. Only connections from this process's uid are answered.
    """

    def __init__(
        self,
        controller: PauseController,
        on_task_marker: Callable[[str, str], None],
        path: Path | None = None,
    ) -> None:
        self.controller = controller
        self.on_task_marker = on_task_marker
        # The task the person marked as started and not yet ended (this recorder's run only).
        self.open_task: str | None = None
        self._task_lock = threading.Lock()
        self.path = path or default_socket_path()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._watchers: set[queue.SimpleQueue[dict[str, Any] | None]] = set()
        self._watchers_lock = threading.Lock()
        controller.gate.subscribe(self._gate_changed)

    def start(self) -> ControlServer:
        ensure_private_dir(self.path.parent)
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600: never open to others, not even briefly
        try:
            listener.bind(str(self.path))
        except OSError as error:
            listener.close()
            raise ControlError(f"cannot create control socket {self.path}: {error}") from error
        finally:
            os.umask(old_umask)
        listener.listen(16)
        self._listener = listener
        # The thread gets the listener itself: a stop() right after start() may clear self._listener first.
        self._thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="demotrace-control", daemon=True
        )
        self._thread.start()
        return self

    def _remove_stale_socket(self) -> None:
        if not self.path.exists() and not self.path.is_symlink():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)  # left by a recorder that died
            return
        finally:
            probe.close()
        raise ControlError(f"another recorder already answers on {self.path}")

    def stop(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not on Linux.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with self._watchers_lock:
            for watcher in self._watchers:
                watcher.put(None)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket) -> None:
        name_os_thread()
        while not self._stopping.is_set():
            try:
                conn, _address = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("control socket accept failed")
                return
            # One thread per connection: a slow or silent client never holds up the next one.
            threading.Thread(
                target=self._serve, args=(conn,), name="demotrace-control-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                uid = peer_uid(conn)
                if uid != os.getuid():
                    log.warning("control socket: refused a connection from uid %d", uid)
                    # Take the request first (unread): closing before the client has written would
                    # give it a broken pipe instead of this answer.
                    conn.settimeout(CLIENT_IDLE_TIMEOUT)
                    _read_line(conn.makefile("rb"))
                    _answer(
                        conn,
                        {
                            "ok": False,
                            "error": f"refused: this recorder belongs to uid {os.getuid()}, "
                            f"and only its owner may control it (you are uid {uid})",
                        },
                    )
                    return
                conn.settimeout(CLIENT_IDLE_TIMEOUT)
                reader = conn.makefile("rb")
                while (line := _read_line(reader)) is not None:
                    request = self._parse(line)
                    if request.get("cmd") == "watch":
                        self._watch(conn)
                        return
                    _answer(conn, self.handle(request))
            except ControlError as error:
                with contextlib.suppress(OSError):
                    _answer(conn, {"ok": False, "error": str(error)})
            except OSError:
                pass  # the client went away or fell silent

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as error:
            raise ControlError(f"request is not JSON: {error}") from error
        if not isinstance(request, dict):
            raise ControlError('request must be a JSON object like {"cmd": "status"}')
        return request

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (no I/O but the controller's and the marker callback's)."""
        command = request.get("cmd")
        try:
            if command == "status":
                return {"ok": True, **self.controller.status(), "task": self.open_task}
            if command == "pause":
                minutes, capped = pause_minutes_for(request.get("minutes"), self.controller.gate.policy)
                if self.controller.gate.state.exempt:
                    # Nothing is recorded: a pause would change nothing, and saying "paused" would lie.
                    return {"ok": True, "paused": False, "exempt": True}
                paused_until = self.controller.pause(minutes)
                answer: dict[str, Any] = {
                    "ok": True,
                    "paused": True,
                    "paused_until": paused_until,
                    "minutes": minutes,
                }
                if capped:
                    answer["capped"] = True
                    answer["message"] = (
                        f"asked for {request.get('minutes')} minutes; the policy allows at most {minutes:g}, "
                        f"so recording is paused for {minutes:g} minutes"
                    )
                return answer
            if command == "resume":
                was_paused = self.controller.resume()
                return {"ok": True, "was_paused": was_paused, **self.controller.status()}
            if command in ("task_start", "task_end"):
                if self.controller.gate.state.exempt:
                    raise ControlError("this device is exempt: nothing is recorded, so there is no task")
                return self._task_marker(command, request.get("text"))
        except ControlError as error:
            return {"ok": False, "error": str(error)}
        return {
            "ok": False,
            "error": f"unknown command {command!r}: use pause, resume, status, task_start, task_end or watch",
        }

    def _task_marker(self, command: str, text: object) -> dict[str, Any]:
        """Start or end a task; the answer says which task ended, if any (a start ends the open one)."""
        with self._task_lock:
            previous = self.open_task
            if command == "task_start":
                started = _task_text(text)
                self.on_task_marker(command, started)
                self.open_task = started
                return {"ok": True, "kind": command, "text": started, "ended": previous}
            if previous is None:
                return {"ok": True, "kind": command, "text": "", "ended": None}  # nothing to end: no marker
            self.on_task_marker(command, "")
            self.open_task = None
            return {"ok": True, "kind": command, "text": "", "ended": previous}

    def _watch(self, conn: socket.socket) -> None:
        updates: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        with self._watchers_lock:
            self._watchers.add(updates)
        conn.settimeout(None)  # a watcher is quiet by design
        try:
            _answer(conn, {"ok": True, **self.controller.status()})
            while (update := updates.get()) is not None:
                _answer(conn, update)
        finally:
            with self._watchers_lock:
                self._watchers.discard(updates)

    def _gate_changed(self) -> None:
        # Runs on whichever thread changed the gate: only hand the news to the watchers' own threads.
        with self._watchers_lock:
            watchers = list(self._watchers)
        if not watchers:
            return
        status = {"ok": True, **self.controller.status()}
        for watcher in watchers:
            watcher.put(status)


# --- wiring for the recorder ---------------------------------------------------------------------------


class LocalControl:
    """Everything the recorder process needs for employee control, started and stopped together:
    the pause controller (with desktop notifications) and the control socket server."""

    def __init__(
        self,
        gate: CaptureGate,
        on_task_marker: Callable[[str, str], None],
        *,
        socket_path: Path | None = None,
        state_file: Path | None = None,
        pending_count: Callable[[], int] | None = None,
        more_status: Callable[[], dict[str, Any]] | None = None,
        notify: bool = True,
    ) -> None:
        on_change = None
        if notify:
            from demotrace.device.notify import notify_pause_change

            on_change = notify_pause_change
        self.controller = PauseController(
            gate,
            state_file or default_pause_state_file(),
            pending_count=pending_count,
            more_status=more_status,
            on_change=on_change,
        )
        self.server = ControlServer(self.controller, on_task_marker, socket_path)

    def start(self) -> LocalControl:
        try:
            self.server.start()
        except BaseException:
            self.controller.close()
            raise
        return self

    def stop(self) -> None:
        self.server.stop()
        self.controller.close()

    def __enter__(self) -> LocalControl:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
