"""The pause: how long, persisted across restarts, and resumed exactly at expiry.

``PauseController`` owns the pause: it writes ``paused_until`` into the CaptureGate, persists it (a
restart neither shortens nor extends a pause) and resumes capture exactly at expiry with one
``threading.Timer`` armed to that instant — no polling. The decisions around it (how long a requested
pause may be, whether a persisted one still runs) are pure functions.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from demotrace.device.control_protocol import ControlError
from demotrace.device.paths import state_dir
from demotrace.files import write_private_file
from demotrace.policy import CaptureGate, CapturePolicy

PAUSE_STATE_FILE = "pause.json"

PauseChange = Literal["paused", "resumed", "expired"]

log = logging.getLogger(__name__)


def default_pause_state_file() -> Path:
    """In XDG state (not the runtime folder): a pause must survive a logout or reboot mid-pause too."""
    return state_dir() / PAUSE_STATE_FILE


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


def recording_state(paused_until: float | None, exempt: bool, now: float, notice_accepted: bool) -> str:
    if exempt:
        return "exempt"
    if not notice_accepted:
        return "awaiting notice"  # nothing is recorded until the person accepts the notice
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
    write_private_file(path, json.dumps({"paused_until": paused_until}).encode(), temp_prefix=".pause-")


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
        more_status: Callable[[], dict[str, Any]] | None = None,
        on_change: Callable[[PauseChange, float | None], None] | None = None,
    ) -> None:
        self.gate = gate
        self.state_file = state_file
        self.clock = clock
        self.pending_count = pending_count
        # What the agent adds: where its spool is, why uploads wait and when they go, what was dropped.
        self.more_status = more_status
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

    def resume(self) -> bool:
        """End the pause now; returns whether there was one."""
        with self._lock:
            was_paused = self.gate.state.paused_until is not None
            self._clear()
        self.gate.update_state(paused_until=None)
        if was_paused:
            self._announce("resumed", None)
        return was_paused

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
            "state": recording_state(paused_until, state.exempt, now, state.notice_accepted),
            "notice_accepted": state.notice_accepted,
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
        if self.more_status is not None:
            try:
                status.update(self.more_status())
            except Exception as error:  # status must answer even if the agent's part fails
                status["status_error"] = str(error)
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
