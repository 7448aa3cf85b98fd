"""Reviewing a fleet policy change before it is stored: is it complete, does it widen capture, what changed.

Pure functions over the policy text and CapturePolicy values: the exemption service refuses, asks for
confirmation, and writes the diff to the audit log from what these return.

A fleet policy must say, by name, what the fleet relies on: its ``mode``, and for an allowlist at least
one ``allow_*`` list, for a denylist both ``deny_apps`` and ``deny_title_patterns``. Defaults would
otherwise fill in silently: an empty upload used to become "everything but the built-in denylist".
"""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec

from demotrace.policy import CapturePolicy

ALLOW_KEYS = ("allow_apps", "allow_url_patterns", "allow_title_patterns")
DENY_KEYS = ("deny_apps", "deny_title_patterns")
# From the least to the most captured when the battery runs low.
_LOW_BATTERY_ORDER = {"pause": 0, "input_only": 1, "normal": 2}


def missing_keys(text: str) -> list[str]:
    """What a fleet policy text must state and does not (empty: complete). The text parses as TOML."""
    data = tomllib.loads(text)
    mode = data.get("mode")
    if mode is None:
        return ["mode", 'allow_apps / allow_url_patterns / allow_title_patterns (for mode = "allowlist")']
    if mode == "allowlist":
        if not any(key in data for key in ALLOW_KEYS):
            return ["one of " + ", ".join(ALLOW_KEYS)]
        return []
    return [key for key in DENY_KEYS if key not in data]


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


def policy_diff(old: CapturePolicy, new: CapturePolicy) -> dict[str, dict[str, Any]]:
    """Every field that changes, as ``{field: {"from": old, "to": new}}`` (lists: ``added``/``removed``)."""
    before, after = msgspec.to_builtins(old), msgspec.to_builtins(new)
    diff: dict[str, dict[str, Any]] = {}
    for name, value in after.items():
        previous = before.get(name)
        if previous == value:
            continue
        if isinstance(value, list) and isinstance(previous, list):
            diff[name] = {
                "added": [item for item in value if item not in previous],
                "removed": [item for item in previous if item not in value],
            }
        else:
            diff[name] = {"from": previous, "to": value}
    return diff
