"""Writing a file so that a crash leaves the old content or the new whole, never readable by others."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private_file(path: Path, data: bytes, *, temp_prefix: str) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename) in its existing folder.

    mkstemp creates the temp file 0600 from the start: what it holds (a token, a pause, a policy, a
    blob) is never readable by others, not even briefly. The temp file sits in the target folder so the
    rename stays on one filesystem (atomic).
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
