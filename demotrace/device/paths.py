"""Where demotrace keeps its per-user files (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(variable: str, default: str) -> Path:
    # The XDG spec: an unset, empty or relative value means the default.
    value = os.environ.get(variable, "")
    base = Path(value) if value and os.path.isabs(value) else Path.home() / default
    return base / "demotrace"


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/demotrace`` (default ``~/.config/demotrace``): keys, credentials, device id."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def data_dir() -> Path:
    """``$XDG_DATA_HOME/demotrace`` (default ``~/.local/share/demotrace``): spool, local collector."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def state_dir() -> Path:
    """``$XDG_STATE_HOME/demotrace`` (default ``~/.local/state/demotrace``): pause state."""
    return _xdg("XDG_STATE_HOME", ".local/state")


def default_spool_dir() -> Path:
    """The spool every command uses unless given ``--spool``: ``record``, ``up``, ``build``."""
    return data_dir() / "spool"


def default_collector_dir() -> Path:
    """The collector folder of ``server`` and ``up`` unless given ``--data``."""
    return data_dir() / "collector"
