"""Pure decisions about what may be captured now, and the thread-safe gate that holds their inputs.

The policy is a TOML file: shipped defaults for a person recording themselves (every app but the
denylist), or an allowlist pushed by the collector for a fleet. The denylist always wins.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

PolicyMode = Literal["denylist", "allowlist"]
LowBatteryMode = Literal["input_only", "pause", "normal"]
# What may be captured: "all" (input, window context, frames), "input_only" (no frames), "nothing".
CaptureLevel = Literal["all", "input_only", "nothing"]
Reason = Literal[
    "",
    "paused",
    "exempt",
    "denied app",
    "denied title",
    "denied url",
    "private window",
    "unknown page",
    "not allowlisted",
    "low battery",
    "notice not accepted",
]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says which field and why."""


class CapturePolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What may be captured. App names match WM_CLASS (class or instance) or the process name,
    case-insensitively; patterns are Python regular expressions searched case-insensitively.

    Browsers (``browser_apps``, or any process our browser extension reports from) are decided by the
    page's URL as the extension reports it (origin and path), never by the title a page chooses:
    ``allow_url_patterns`` and ``deny_url_patterns`` match that URL, private windows are never
    captured, and a browser window whose page is not reported is not captured in allowlist mode (in
    denylist mode, only when the browser runs the extension: without it, the deny title patterns are
    all there is). ``record_urls`` stores the URL with the window; ``record_page_elements`` stores what
    a click or focus landed on (role, accessible name, input type, box).
    """

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
    browser_apps: list[str] = msgspec.field(
        default_factory=lambda: [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
            "chrome",
            "firefox",
            "firefox-esr",
            "navigator",
            "brave-browser",
            "microsoft-edge",
            "vivaldi-stable",
            "opera",
        ]
    )
    deny_url_patterns: list[str] = msgspec.field(
        default_factory=lambda: [
            r"^https://mail\.google\.com/",
            r"^https://outlook\.(live|office|office365)\.com/",
            r"^https://mail\.yahoo\.com/",
            r"^https://(mail|account)\.proton\.me/",
            r"^https://vault\.bitwarden\.com/",
            r"^https://([a-z0-9-]+\.)?1password\.com/",
            r"^(chrome|edge|brave)://(settings|password-manager)",
            r"^about:(logins|preferences)",
        ]
    )
    record_urls: bool = True
    record_page_elements: bool = True
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
            "deny_url_patterns",
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

# What a collector serves before its admin sets a fleet policy: allowlist-based, so a fleet captures
# only common work tools until the admin says otherwise. Browsers are not listed as apps: their work
# sites are allowed by URL, as the browser extension reports it (a page's title proves nothing).
DEFAULT_FLEET_POLICY = CapturePolicy(
    mode="allowlist",
    allow_apps=[
        "libreoffice",
        "soffice",
        "code",
        "code-oss",
        "jetbrains-idea",
        "jetbrains-pycharm",
        "gedit",
        "org.gnome.TextEditor",
        "gnome-terminal-server",
        "konsole",
        "xterm",
        "thunderbird",
        "evince",
        "okular",
        "gimp",
        "inkscape",
    ],
    allow_url_patterns=[
        r"^https://([a-z0-9-]+\.)*atlassian\.net/",
        r"^https://github\.com/",
        r"^https://gitlab\.com/",
        r"^https://docs\.google\.com/",
        r"^https://([a-z0-9-]+\.)*sharepoint\.com/",
    ],
)


def parse_policy(text: str, source: str = "policy") -> CapturePolicy:
    """Parse a TOML policy; unknown keys and wrong types are errors naming the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: not valid TOML: {error}") from error
    except RecursionError:  # tomllib recurses once per nesting level
        raise PolicyError(f"{source}: nested too deeply to be a policy") from None
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


class WindowContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a decision knows about a window: WM_CLASS ``app`` (class) and ``instance``, the owning
    ``process`` name, the ``title``; for a browser window, the page ``url`` (origin and path) and
    whether it is ``private``, as the browser extension reports them, and whether the browser runs
    the ``extension`` at all (then a window it does not report is an unknown page)."""

    app: str = ""
    instance: str = ""
    process: str = ""
    title: str = ""
    url: str | None = None
    private: bool = False
    extension: bool = False


@dataclass(frozen=True)
class Decision:
    """May this be captured now? ``capture`` says how much; ``reason`` why not everything ("" if all)."""

    capture: CaptureLevel
    reason: Reason = ""

    @property
    def input_allowed(self) -> bool:
        return self.capture != "nothing"

    @property
    def screen_allowed(self) -> bool:
        return self.capture == "all"


CAPTURE_ALL = Decision("all")


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    # Policies are validated on load, so every pattern compiles; cached because decisions run per event.
    return tuple(re.compile(pattern, re.IGNORECASE) for pattern in patterns)


def _any_search(patterns: Sequence[str], text: str) -> bool:
    return bool(text) and any(pattern.search(text) for pattern in _compiled(tuple(patterns)))


def _names_of(window: WindowContext) -> set[str]:
    return {name.casefold() for name in (window.app, window.instance, window.process) if name}


def _app_listed(apps: Sequence[str], window: WindowContext) -> bool:
    return not _names_of(window).isdisjoint(app.casefold() for app in apps)


def is_paused(state: DeviceState, now_wall: float) -> bool:
    return state.paused_until is not None and now_wall < state.paused_until


def is_low_battery(policy: CapturePolicy, state: DeviceState) -> bool:
    """On battery below the policy's threshold (the same rule the uploader uses)."""
    return (
        state.on_battery
        and state.battery_percent is not None
        and state.battery_percent < policy.low_battery_percent
    )


def decide_device(policy: CapturePolicy, state: DeviceState, now_wall: float) -> Decision:
    """The part of a decision that does not depend on the window: exemption, notice, pause, battery."""
    if state.exempt:
        return Decision("nothing", "exempt")
    if not state.notice_accepted:
        # Nothing before the person has seen and accepted the notice for the policy in force.
        return Decision("nothing", "notice not accepted")
    if is_paused(state, now_wall):
        return Decision("nothing", "paused")
    if is_low_battery(policy, state) and policy.low_battery_mode != "normal":
        level: CaptureLevel = "input_only" if policy.low_battery_mode == "input_only" else "nothing"
        return Decision(level, "low battery")
    return CAPTURE_ALL


def is_browser_app(policy: CapturePolicy, window: WindowContext) -> bool:
    return window.extension or _app_listed(policy.browser_apps, window)


def _page_denial(policy: CapturePolicy, window: WindowContext) -> Reason:
    """Why this browser window may not be captured ("" if it may): by its page, never its title."""
    if window.private:
        return "private window"
    if window.url is None:
        # Without the extension's word on the page, a denylist can only go by the title (checked).
        return "unknown page" if policy.mode == "allowlist" or window.extension else ""
    if _any_search(policy.deny_url_patterns, window.url):
        return "denied url"
    if policy.mode == "denylist":
        return ""
    if _app_listed(policy.allow_apps, window) or _any_search(policy.allow_url_patterns, window.url):
        return ""
    return "not allowlisted"


def window_denial(policy: CapturePolicy, window: WindowContext | None) -> Reason:
    """Why this window may not be captured at all ("" if it may). The denylist always wins; in
    allowlist mode a window must match an allowed app or title pattern, or for a browser an allowed URL
    pattern (see ``CapturePolicy``). No window (the bare desktop) is allowed only in denylist mode."""
    if window is None:
        return "not allowlisted" if policy.mode == "allowlist" else ""
    if _app_listed(policy.deny_apps, window):
        return "denied app"
    if _any_search(policy.deny_title_patterns, window.title):
        return "denied title"
    if is_browser_app(policy, window):
        return _page_denial(policy, window)
    if policy.mode == "denylist":
        return ""
    if (
        _app_listed(policy.allow_apps, window)
        or _any_search(policy.allow_title_patterns, window.title)
        or (window.url is not None and _any_search(policy.allow_url_patterns, window.url))
    ):
        return ""
    return "not allowlisted"


def decide(
    policy: CapturePolicy, window: WindowContext | None, state: DeviceState, now_wall: float
) -> Decision:
    """What may be captured of ``window`` (the focused one; None: none) now.

    Exemption, a notice not accepted and pause stop everything, then the window's own denial, then low
    battery (frames off, or everything off with ``low_battery_mode = "pause"``).
    """
    device = decide_device(policy, state, now_wall)
    if device.capture == "nothing" and device.reason != "low battery":
        return device
    denial = window_denial(policy, window)
    if denial:
        return Decision("nothing", denial)
    return device


def decision_expires(state: DeviceState, now_wall: float) -> float | None:
    """The wall time at which a decision taken now may change by time alone (a pause ends), if any."""
    if is_paused(state, now_wall):
        return state.paused_until
    return None


def is_password_window(policy: CapturePolicy, window: WindowContext | None) -> bool:
    """Is this a window where typing is password entry (its title matches password_title_patterns)?"""
    return window is not None and _any_search(policy.password_title_patterns, window.title)


class DeviceState(msgspec.Struct, kw_only=True):
    """The non-policy inputs of every capture decision."""

    paused_until: float | None = None  # wall time; None = not paused
    exempt: bool = False
    on_battery: bool = False
    battery_percent: float | None = None
    metered_network: bool = False
    # Has the person accepted the notice for the policy in force (device/consent.py keeps it)? Never
    # True by default: whoever builds a gate says so explicitly.
    notice_accepted: bool = False


class CaptureGate:
    """Thread-safe holder of the policy and device state; listeners hear about every change.

    The recorder reads it on its processing thread; the control socket, the policy refresher and the
    power/network watchers write to it from theirs.
    """

    def __init__(
        self,
        policy: CapturePolicy = DEFAULT_LOCAL_POLICY,
        clock: Callable[[], float] = time.time,
        *,
        notice_accepted: bool = False,
    ):
        self._lock = threading.Lock()
        self._policy = policy
        self._state = DeviceState(notice_accepted=notice_accepted)
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

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def decide(self, window: WindowContext | None) -> Decision:
        """The decision for ``window`` under the current policy and state, at the gate's clock."""
        with self._lock:
            policy, state = self._policy, self._state
        return decide(policy, window, state, self.clock())

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
