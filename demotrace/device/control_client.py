"""The employee's side of the control socket: one short connection per request to a running recorder."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from demotrace.device.control_protocol import (
    MAX_REQUEST_BYTES,
    ControlError,
    RecorderNotRunning,
    default_socket_path,
    message_line,
)


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
                sock.sendall(message_line({"cmd": cmd, **fields}))
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
            sock.sendall(message_line({"cmd": "watch"}))
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
