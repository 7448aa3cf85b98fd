"""Local control of a running recorder: pause / resume / status / task markers.

Two halves, both in the recorder's process:
- ``PauseController`` owns the pause: it writes ``paused_until`` into the CaptureGate, persists it (a
  restart neither shortens nor extends a pause) and resumes capture exactly at expiry with one
  ``threading.Timer`` armed to that instant — no polling.
- ``ControlServer`` answers the employee's tools (CLI, tray) on a Unix stream socket that only this user
  can reach: a 0700 folder, a 0600 socket, and a SO_PEERCRED check of every connection's uid.

Protocol: one JSON object per line each way. Requests ``{"cmd": "pause", "minutes": 15}`` (minutes
optional: the policy's default), ``{"cmd": "resume"}``, ``{"cmd": "status"}``,
``{"cmd": "task_start", "text": "..."}``, ``{"cmd": "task_end"}``, ``{"cmd": "watch"}`` (the server then
writes a status line now and after every change, until the client hangs up). Answers
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import re
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

from demotrace.policy import CaptureGate, CapturePolicy
from demotrace.threads import name_os_thread

SOCKET_NAME = "control.sock"
PAUSE_STATE_FILE = "pause.json"
MAX_REQUEST_BYTES = 64 * 1024
MAX_TASK_TEXT_CHARS = 500
# A client that connects and then says nothing must not hold a handler thread forever.
CLIENT_IDLE_TIMEOUT = 30.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

PauseChange = Literal["paused", "resumed", "expired"]

log = logging.getLogger(__name__)


class ControlError(Exception):
    """A control request that cannot be done; the message is meant for the employee."""


class RecorderNotRunning(ControlError):
    """No recorder answers on the control socket."""


# --- places ------------------------------------------------------------------------------------------


def default_control_dir() -> Path:
    """``$XDG_RUNTIME_DIR/demotrace`` (private to the user, gone at logout), else ``~/.cache/demotrace``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "demotrace"
    return Path.home() / ".cache" / "demotrace"


def default_socket_path() -> Path:
    override = os.environ.get("DEMOTRACE_CONTROL_SOCKET")
    return Path(override) if override else default_control_dir() / SOCKET_NAME


def default_pause_state_file() -> Path:
    """In XDG state (not the runtime folder): a pause must survive a logout or reboot mid-pause too."""
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state_home / "demotrace" / PAUSE_STATE_FILE


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700, or check an existing one is ours and closed to others."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise ControlError(f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


# --- pure decisions ----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs)?\s*$", re.IGNORECASE)
_UNIT_MINUTES = {"s": 1 / 60, "m": 1.0, "h": 60.0}


def parse_duration(text: str) -> float:
    """Minutes in a duration such as ``15m``, ``90s``, ``1h`` or ``20`` (minutes); raises ControlError."""
    match = _DURATION.match(text)
    if match is None:
        raise ControlError(f"cannot read duration {text!r}: use a number with s, m or h, like 15m or 90s")
    unit = (match.group(2) or "m")[0].lower()
    return float(match.group(1)) * _UNIT_MINUTES[unit]


def pause_minutes_for(requested: float | None, policy: CapturePolicy) -> tuple[float, bool]:
    """The pause length to apply and whether the request was capped at the policy's maximum.

    None means the policy's default; more than the maximum is capped (the employee still gets the
    longest pause allowed rather than none); zero, negative or not a number is an error.
    """
    if requested is None:
        return policy.pause_default_minutes, False
    if isinstance(requested, bool) or not isinstance(requested, int | float) or not math.isfinite(requested):
        raise ControlError(f"pause length must be a number of minutes, not {requested!r}")
    if requested <= 0:
        raise ControlError("pause length must be more than zero minutes")
    if requested > policy.pause_max_minutes:
        return policy.pause_max_minutes, True
    return float(requested), False


def restored_pause(paused_until: float | None, now: float) -> float | None:
    """A persisted pause still running at ``now`` is kept as is; an expired one is dropped."""
    if paused_until is None or not math.isfinite(paused_until) or paused_until <= now:
        return None
    return paused_until


def recording_state(paused_until: float | None, exempt: bool, now: float) -> str:
    if exempt:
        return "exempt"
    if paused_until is not None and paused_until > now:
        return "paused"
    return "recording"


# --- pause state file ----------------------------------------------------------------------------------


def read_pause_state(path: Path) -> float | None:
    """The persisted ``paused_until``; a missing or unreadable file means no pause (and says so)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable pause state %s: %s", path, error)
        return None
    value = data.get("paused_until") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def write_pause_state(path: Path, paused_until: float | None) -> None:
    """Write atomically (temp file + rename), 0600 from the start, in a 0700 folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".pause-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"paused_until": paused_until}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# --- the pause ---------------------------------------------------------------------------------------


class PauseController:
    """Pause and resume capture through a CaptureGate, persisted, with auto-resume at expiry.

    ``clock`` is wall time (injectable for tests); the expiry timer's delay is computed from it, and
    ``expire_now_if_due()`` is what the timer calls, so a test can also call it after moving its clock.
    ``on_change(kind, paused_until)`` hears "paused", "resumed" (asked for) and "expired" (auto-resume).
    """

    def __init__(
        self,
        gate: CaptureGate,
        state_file: Path,
        clock: Callable[[], float] = time.time,
        *,
        pending_count: Callable[[], int] | None = None,
        on_change: Callable[[PauseChange, float | None], None] | None = None,
    ) -> None:
        self.gate = gate
        self.state_file = state_file
        self.clock = clock
        self.pending_count = pending_count
        self.on_change = on_change
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self._restore()

    def _restore(self) -> None:
        persisted = read_pause_state(self.state_file)
        paused_until = restored_pause(persisted, self.clock())
        if persisted is not None and paused_until is None:
            log.info("the pause that was running before the restart has ended; recording")
            self.state_file.unlink(missing_ok=True)
        if paused_until is not None:
            with self._lock:
                self._arm(paused_until)
            self.gate.update_state(paused_until=paused_until)

    def pause(self, minutes: float | None = None) -> float:
        """Pause for ``minutes`` (policy default if None, capped at the policy maximum); returns
        ``paused_until`` (wall time). Zero or negative minutes raise ControlError."""
        length, _capped = pause_minutes_for(minutes, self.gate.policy)
        with self._lock:
            paused_until = self.clock() + length * 60.0
            # Persist before the gate changes: a crash right after still honours the pause on restart.
            write_pause_state(self.state_file, paused_until)
            self._arm(paused_until)
        self.gate.update_state(paused_until=paused_until)
        self._announce("paused", paused_until)
        return paused_until

    def resume(self) -> None:
        with self._lock:
            was_paused = self.gate.state.paused_until is not None
            self._clear()
        self.gate.update_state(paused_until=None)
        if was_paused:
            self._announce("resumed", None)

    def expire_now_if_due(self) -> bool:
        """Resume if the pause has run out by ``clock``; re-arm if the timer fired early. True if resumed."""
        with self._lock:
            paused_until = self.gate.state.paused_until
            if paused_until is None:
                return False
            if paused_until > self.clock():
                self._arm(paused_until)
                return False
            self._clear()
        self.gate.update_state(paused_until=None)
        self._announce("expired", None)
        return True

    def status(self) -> dict[str, Any]:
        state = self.gate.state
        now = self.clock()
        paused_until = state.paused_until if state.paused_until is not None else None
        remaining = max(0.0, paused_until - now) if paused_until is not None else 0.0
        policy = self.gate.policy
        status: dict[str, Any] = {
            "state": recording_state(paused_until, state.exempt, now),
            "paused_until": paused_until,
            "remaining_seconds": round(remaining, 1),
            "exempt": state.exempt,
            "policy_mode": policy.mode,
            "pause_default_minutes": policy.pause_default_minutes,
            "pause_max_minutes": policy.pause_max_minutes,
        }
        if self.pending_count is not None:
            try:
                status["spool_pending"] = self.pending_count()
            except Exception as error:  # status must answer even if the spool is in trouble
                status["spool_pending"] = None
                status["spool_error"] = str(error)
        return status

    def close(self) -> None:
        """Cancel the expiry timer (the persisted pause stays for the next start)."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # Callers hold self._lock.
    def _arm(self, paused_until: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closed:
            return
        delay = max(0.0, paused_until - self.clock())
        self._timer = threading.Timer(delay, self._on_timer)
        self._timer.name = "demotrace-pause-expiry"
        self._timer.daemon = True
        self._timer.start()

    def _clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state_file.unlink(missing_ok=True)

    def _on_timer(self) -> None:
        try:
            self.expire_now_if_due()
        except Exception:
            log.exception("auto-resume failed")

    def _announce(self, kind: PauseChange, paused_until: float | None) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(kind, paused_until)
        except Exception:  # a failing notification must never undo or block a pause
            log.exception("pause listener failed")


# --- the socket server -------------------------------------------------------------------------------


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (as the kernel saw it at connect)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(creds)
    return int(uid)


def _answer(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _read_line(reader: Any) -> bytes | None:
    line: bytes = reader.readline(MAX_REQUEST_BYTES + 1)
    if not line:
        return None
    if len(line) > MAX_REQUEST_BYTES:
        raise ControlError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    return line


def _task_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlError('task_start needs "text": what the task is, in a few words')
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
                return {"ok": True, **self.controller.status()}
            if command == "pause":
                minutes, capped = pause_minutes_for(request.get("minutes"), self.controller.gate.policy)
                paused_until = self.controller.pause(minutes)
                answer: dict[str, Any] = {"ok": True, "paused_until": paused_until, "minutes": minutes}
                if capped:
                    answer["capped"] = True
                    answer["message"] = (
                        f"asked for {request.get('minutes')} minutes; the policy allows at most {minutes:g}, "
                        f"so recording is paused for {minutes:g} minutes"
                    )
                return answer
            if command == "resume":
                self.controller.resume()
                return {"ok": True, **self.controller.status()}
            if command in ("task_start", "task_end"):
                if self.controller.gate.state.exempt:
                    raise ControlError("this device is exempt: nothing is recorded, so there is no task")
                text = _task_text(request.get("text")) if command == "task_start" else ""
                self.on_task_marker(command, text)
                return {"ok": True, "kind": command, "text": text}
        except ControlError as error:
            return {"ok": False, "error": str(error)}
        return {
            "ok": False,
            "error": f"unknown command {command!r}: use pause, resume, status, task_start, task_end or watch",
        }

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


# --- the client --------------------------------------------------------------------------------------


class ControlClient:
    """Talks to a running recorder's control socket; every call opens its own short connection."""

    def __init__(self, path: Path | None = None, timeout: float = 10.0) -> None:
        self.path = path or default_socket_path()
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            sock.close()
            raise RecorderNotRunning(
                f"no recorder is running (nothing answers on {self.path}); start one with `demotrace record`"
            ) from error
        except PermissionError as error:
            sock.close()
            raise ControlError(f"refused: {self.path} belongs to another user") from error
        except OSError as error:
            sock.close()
            raise ControlError(f"cannot reach the recorder on {self.path}: {error}") from error
        return sock

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one request; returns the answer, or raises ControlError with the recorder's message."""
        with self._connect() as sock:
            try:
                sock.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
                line = sock.makefile("rb").readline(MAX_REQUEST_BYTES + 1)
            except OSError as error:
                raise ControlError(f"the recorder on {self.path} did not answer: {error}") from error
        return _decode_answer(line, self.path)

    def pause(self, minutes: float | None = None) -> dict[str, Any]:
        return self.request("pause", minutes=minutes)

    def resume(self) -> dict[str, Any]:
        return self.request("resume")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def task_start(self, text: str) -> dict[str, Any]:
        return self.request("task_start", text=text)

    def task_end(self) -> dict[str, Any]:
        return self.request("task_end")

    def watch(self, stop: threading.Event | None = None) -> Generator[dict[str, Any], None, None]:
        """Status now, then after every change, until the recorder stops (or the caller closes the
        generator). Blocks in recv between changes: no polling."""
        sock = self._connect()
        sock.settimeout(None)
        try:
            sock.sendall(b'{"cmd": "watch"}\n')
            reader = sock.makefile("rb")
            while stop is None or not stop.is_set():
                line = reader.readline(MAX_REQUEST_BYTES + 1)
                if not line:
                    return
                yield _decode_answer(line, self.path)
        finally:
            sock.close()


def _decode_answer(line: bytes, path: Path) -> dict[str, Any]:
    if not line:
        raise ControlError(f"the recorder on {path} closed the connection without answering")
    try:
        answer = json.loads(line)
    except ValueError as error:
        raise ControlError(f"the recorder on {path} gave an unreadable answer: {error}") from error
    if not isinstance(answer, dict):
        raise ControlError(f"the recorder on {path} gave an unreadable answer")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error") or "the recorder refused"))
    return answer


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
