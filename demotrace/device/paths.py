"""Where demotrace keeps its per-user files (XDG base directories), and how it writes them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/demotrace`` (default ``~/.config/demotrace``): keys, credentials, device id."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "demotrace"


def write_private_file(path: Path, data: bytes, *, temp_prefix: str) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename) in its existing folder.

    mkstemp creates the temp file 0600 from the start: what it holds (a token, a pause, a policy) is
    never readable by others, not even briefly, and a crash leaves the old file or the new one whole.
    """
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
