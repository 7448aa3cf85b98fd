"""The control socket's protocol, shared by the recorder's server and the employee's tools.

Protocol: one JSON object per line each way. Requests ``{"cmd": "pause", "minutes": 15}`` (minutes
optional: the policy's default), ``{"cmd": "resume"}``, ``{"cmd": "status"}``,
``{"cmd": "task_start", "text": "..."}``, ``{"cmd": "task_end"}``, ``{"cmd": "watch"}`` (the server then
writes a status line now and after every change, until the client hangs up); the agent adds
``{"cmd": "notice"}`` (the notice of the policy in force: text, digest, accepted),
``{"cmd": "accept_notice", "digest": "..."}`` and ``{"cmd": "notice_reload"}``. Answers
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024


class ControlError(Exception):
    """A control request that cannot be done; the message is meant for the employee."""


class RecorderNotRunning(ControlError):
    """No recorder answers on the control socket."""


def default_control_dir() -> Path:
    """``$XDG_RUNTIME_DIR/demotrace`` (private to the user, gone at logout), else ``~/.cache/demotrace``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "demotrace"
    return Path.home() / ".cache" / "demotrace"


def default_socket_path() -> Path:
    override = os.environ.get("DEMOTRACE_CONTROL_SOCKET")
    return Path(override) if override else default_control_dir() / SOCKET_NAME


def message_line(message: dict[str, Any]) -> bytes:
    """One request or answer as it goes on the socket: a JSON object and a newline."""
    return json.dumps(message).encode() + b"\n"
