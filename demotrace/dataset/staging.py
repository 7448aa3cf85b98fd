"""Build a dataset beside its folder and swap it in whole: a rebuild leaves nothing of the old build
(no stale images, no empty export folders), and a failed or interrupted build leaves the old dataset
as it was (or no folder at all) instead of a half-written one.

The new build goes to a hidden sibling (same file system, so the swap is a rename); the old folder is
exchanged with it in one ``renameat2(RENAME_EXCHANGE)`` call where Linux has it, else by two renames.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec

from demotrace.dataset.privacy import default_key_path, load_or_create_key
from demotrace.dataset.write import SUMMARY_FILE, BuildSummary, summary_json

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class DatasetExists(Exception):
    """The output folder holds something the build will not replace without being told."""


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty folder unless ``overwrite``, and never one that is not a dataset
    (a typo like ``--out ~`` must not delete a home folder)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DatasetExists(f"{out} is a file, not a dataset folder: choose another --out")
    if not any(out.iterdir()):
        return
    if not (out / SUMMARY_FILE).is_file():
        raise DatasetExists(
            f"{out} is not empty and is not a dataset (no {SUMMARY_FILE}): choose another --out"
        )
    if not overwrite:
        raise DatasetExists(f"{out} already holds a dataset: add --overwrite to replace it")


@contextlib.contextmanager
def staged_build(out: Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``out`` to build into; on success it replaces ``out`` whole, on
    any error (or Ctrl+C) it is removed and ``out`` is left untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        yield staging
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    if not _exchange(staging, out):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / "dataset")
        staging.rename(out)
        staging = old
    shutil.rmtree(staging)  # now the old build (the finally of staged_build finds nothing left)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where that is not available."""
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    renameat2 = getattr(ctypes.CDLL(library, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return bool(result == 0)


def pseudonym_key_for(out: Path) -> tuple[bytes, Path]:
    """The key the dataset in ``out`` uses (beside it, made on the first build): a build staged in
    another folder must still use it, or rebuilt ids would change."""
    path = default_key_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return load_or_create_key(path), path


def moved_summary(summary: BuildSummary, staging: Path, out: Path, key_path: Path) -> BuildSummary:
    """The summary of a build made in ``staging`` as it will read once swapped into ``out``, with the
    key's path (not filled in when the key is given); rewrites the staged summary.json to match."""
    figures = msgspec.structs.asdict(summary)
    for name, value in figures.items():
        if isinstance(value, str) and value and Path(value).is_relative_to(staging):
            figures[name] = str(out / Path(value).relative_to(staging))
    figures["pseudonym_key_path"] = str(key_path)
    moved = BuildSummary(**figures)
    (staging / SUMMARY_FILE).write_bytes(summary_json(moved))
    return moved
