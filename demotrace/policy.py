"""Pure decisions about what may be captured now, and the thread-safe gate that holds their inputs.

The policy is a TOML file: shipped defaults for a person recording themselves (every app but the
denylist), or an allowlist pushed by the collector for a fleet. The denylist always wins.
"""

from __future__ import annotations

import re
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

PolicyMode = Literal["denylist", "allowlist"]
LowBatteryMode = Literal["input_only", "pause", "normal"]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says which field and why."""


class CapturePolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What may be captured. App names match WM_CLASS (class or instance) or the process name,
    case-insensitively; patterns are Python regular expressions searched case-insensitively."""

    mode: PolicyMode = "denylist"
    allow_apps: list[str] = []
    allow_url_patterns: list[str] = []
    allow_title_patterns: list[str] = []
    deny_apps: list[str] = msgspec.field(
        default_factory=lambda: [
            "keepassxc",
            "keepass2",
            "keepass",
            "1password",
            "bitwarden",
            "lastpass",
            "seahorse",
            "gnome-keyring",
            "kwalletmanager5",
            "pinentry",
            "pinentry-gtk-2",
            "pinentry-qt",
            "gcr-prompter",
            "polkit-gnome-authentication-agent-1",
        ]
    )
    deny_title_patterns: list[str] = msgspec.field(
        default_factory=lambda: [
            r"\bprivate browsing\b",
            r"\bincognito\b",
            r"\binprivate\b",
            r"\bonline banking\b",
            r"\bbank(ing)?\b.*\b(log ?in|sign ?in|account)\b",
            r"\bpatient portal\b",
            r"\bmychart\b",
            r"\bmedical records?\b",
            r"\bpassword manager\b",
        ]
    )
    # Windows whose title matches are treated as password entry: typed keys become <PASSWORD>.
    password_title_patterns: list[str] = msgspec.field(
        default_factory=lambda: [
            r"\bpassword\b",
            r"\bpassphrase\b",
            r"\bsign ?in\b",
            r"\blog ?in\b",
            r"\bunlock\b",
            r"\bauthenticat",
            r"\b2fa\b",
            r"\bone-time (code|password)\b",
        ]
    )
    pause_default_minutes: float = 15.0
    pause_max_minutes: float = 30.0
    low_battery_percent: float = 20.0
    low_battery_mode: LowBatteryMode = "input_only"
    daily_upload_mb: float = 100.0
    upload_on_metered: bool = False
    defer_ocr_on_battery: bool = True
    refresh_seconds: float = 60.0
    retention_days: int = 30

    def __post_init__(self) -> None:
        if self.pause_max_minutes <= 0 or self.pause_default_minutes <= 0:
            raise PolicyError("pause_default_minutes and pause_max_minutes must be positive")
        if self.pause_default_minutes > self.pause_max_minutes:
            raise PolicyError("pause_default_minutes must not exceed pause_max_minutes")
        if not 0 <= self.low_battery_percent <= 100:
            raise PolicyError("low_battery_percent must be between 0 and 100")
        if self.refresh_seconds < 1:
            raise PolicyError("refresh_seconds must be at least 1")
        for name in (
            "allow_url_patterns",
            "allow_title_patterns",
            "deny_title_patterns",
            "password_title_patterns",
        ):
            for pattern in getattr(self, name):
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise PolicyError(
                        f"{name}: {pattern!r} is not a valid regular expression: {error}"
                    ) from error


DEFAULT_LOCAL_POLICY = CapturePolicy()


def parse_policy(text: str, source: str = "policy") -> CapturePolicy:
    """Parse a TOML policy; unknown keys and wrong types are errors naming the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: not valid TOML: {error}") from error
    try:
        return msgspec.convert(data, CapturePolicy)
    except msgspec.ValidationError as error:
        raise PolicyError(f"{source}: {error}") from error


def load_policy(path: Path | None) -> CapturePolicy:
    if path is None:
        return DEFAULT_LOCAL_POLICY
    try:
        text = path.read_text()
    except OSError as error:
        raise PolicyError(f"cannot read policy {path}: {error}") from error
    return parse_policy(text, source=str(path))


class DeviceState(msgspec.Struct, kw_only=True):
    """The non-policy inputs of every capture decision."""

    paused_until: float | None = None  # wall time; None = not paused
    exempt: bool = False
    on_battery: bool = False
    battery_percent: float | None = None
    metered_network: bool = False


class CaptureGate:
    """Thread-safe holder of the policy and device state; listeners hear about every change.

    The recorder reads it on its processing thread; the control socket, the policy refresher and the
    power/network watchers write to it from theirs.
    """

    def __init__(self, policy: CapturePolicy = DEFAULT_LOCAL_POLICY, clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._policy = policy
        self._state = DeviceState()
        self._listeners: list[Callable[[], None]] = []
        self.clock = clock

    @property
    def policy(self) -> CapturePolicy:
        with self._lock:
            return self._policy

    @property
    def state(self) -> DeviceState:
        with self._lock:
            return msgspec.structs.replace(self._state)

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def set_policy(self, policy: CapturePolicy) -> None:
        with self._lock:
            self._policy = policy
        self._changed()

    def update_state(self, **changes: object) -> None:
        """Change DeviceState fields by name, e.g. update_state(paused_until=None)."""
        with self._lock:
            self._state = msgspec.structs.replace(self._state, **changes)
        self._changed()
