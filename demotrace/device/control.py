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
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from demotrace.device.control_protocol import (
    MAX_REQUEST_BYTES,
    ControlError,
    default_socket_path,
    message_line,
)
from demotrace.device.pause import PauseChange, PauseController, default_pause_state_file, pause_minutes_for
from demotrace.local_socket import PrivateListener, peer_uid
from demotrace.policy import CaptureGate

MAX_TASK_TEXT_CHARS = 500
# A client that connects and then says nothing must not hold a handler thread forever.
CLIENT_IDLE_TIMEOUT = 30.0

log = logging.getLogger(__name__)


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
        more_commands: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        self.controller = controller
        self.on_task_marker = on_task_marker
        # Commands the agent adds (the notice: "notice", "accept_notice", "notice_reload").
        self.more_commands = dict(more_commands or {})
        # The task the person marked as started and not yet ended (this recorder's run only).
        self.open_task: str | None = None
        self._task_lock = threading.Lock()
        self.path = path or default_socket_path()
        self._server = PrivateListener(self.path, self._serve, "demotrace-control")
        self._watchers: set[queue.SimpleQueue[dict[str, Any] | None]] = set()
        self._watchers_lock = threading.Lock()
        controller.gate.subscribe(self._gate_changed)

    def start(self) -> ControlServer:
        try:
            self._server.start()
        except FileExistsError as error:
            raise ControlError(f"another recorder already answers on {self.path}") from error
        except PermissionError as error:
            raise ControlError(str(error)) from error
        except OSError as error:
            raise ControlError(f"cannot create control socket {self.path}: {error}") from error
        return self

    def stop(self) -> None:
        self._server.stop()
        with self._watchers_lock:
            for watcher in self._watchers:
                watcher.put(None)

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

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
            if isinstance(command, str) and command in self.more_commands:
                return self.more_commands[command](request)
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
        on_pause_change: Callable[[PauseChange, float | None], None] | None = None,
        more_commands: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        listeners: list[Callable[[PauseChange, float | None], None]] = []
        if notify:
            from demotrace.device.notify import notify_pause_change

            listeners.append(notify_pause_change)
        if on_pause_change is not None:
            listeners.append(on_pause_change)  # the collector hears of every pause (policy_sync.py)

        def on_change(kind: PauseChange, paused_until: float | None) -> None:
            for listener in listeners:
                try:
                    listener(kind, paused_until)
                except Exception:  # one failing listener must not keep the others from hearing it
                    log.exception("pause listener failed")

        self.controller = PauseController(
            gate,
            state_file or default_pause_state_file(),
            pending_count=pending_count,
            more_status=more_status,
            on_change=on_change,
        )
        self.server = ControlServer(self.controller, on_task_marker, socket_path, more_commands)

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
