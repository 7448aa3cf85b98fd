"""Where demotrace keeps its per-user files (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/demotrace`` (default ``~/.config/demotrace``): keys, credentials, device id."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "demotrace"
