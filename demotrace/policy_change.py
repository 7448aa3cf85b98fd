"""How one capture policy lets more be captured than another: shared by the collector (it asks an admin to
confirm a widening) and the device (a widening asks the person to accept the notice again)."""

from __future__ import annotations

from demotrace.policy import CapturePolicy

ALLOW_KEYS = ("allow_apps", "allow_url_patterns", "allow_title_patterns")
DENY_KEYS = ("deny_apps", "deny_title_patterns")
# From the least to the most captured when the battery runs low.
_LOW_BATTERY_ORDER = {"pause": 0, "input_only": 1, "normal": 2}


def _lower_set(values: list[str]) -> set[str]:
    return {value.lower() for value in values}


def widenings(old: CapturePolicy, new: CapturePolicy) -> list[str]:
    """How ``new`` lets more be captured, or kept longer, than ``old`` (empty: it does not)."""
    found: list[str] = []
    if old.mode == "allowlist" and new.mode == "denylist":
        found.append("mode changes from allowlist to denylist: every app not denied may be captured")
    if new.mode == "allowlist":
        for key in ALLOW_KEYS:
            added = sorted(_lower_set(getattr(new, key)) - _lower_set(getattr(old, key)))
            if added:
                found.append(f"{key} gains {', '.join(added)}")
    for key in (*DENY_KEYS, "password_title_patterns"):
        removed = sorted(_lower_set(getattr(old, key)) - _lower_set(getattr(new, key)))
        if removed:
            found.append(f"{key} loses {', '.join(removed)}")
    if _LOW_BATTERY_ORDER[new.low_battery_mode] > _LOW_BATTERY_ORDER[old.low_battery_mode]:
        found.append(f"low_battery_mode goes from {old.low_battery_mode} to {new.low_battery_mode}")
    if new.pause_max_minutes < old.pause_max_minutes:
        found.append(f"pause_max_minutes drops from {old.pause_max_minutes:g} to {new.pause_max_minutes:g}")
    if new.retention_days > old.retention_days:
        found.append(f"retention_days grows from {old.retention_days} to {new.retention_days}")
    return found
