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
from demotrace.policy_change import ALLOW_KEYS, DENY_KEYS


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
