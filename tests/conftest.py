from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from demotrace.demo.desktop import VirtualDesktop, missing_programs


@pytest.fixture(scope="session")
def desktop() -> Iterator[VirtualDesktop]:
    """One real Xvfb + openbox for the whole test session (1920x1080)."""
    missing = missing_programs()
    if missing:
        pytest.fail(f"X tests need {missing}: run scripts/setup.sh")
    with VirtualDesktop() as running:
        yield running


@pytest.fixture()
def bare_desktop() -> Iterator[VirtualDesktop]:
    """A fresh Xvfb with no window manager (for the pointer-window fallback)."""
    with VirtualDesktop(window_manager=False, width=1280, height=800) as running:
        yield running


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs), so 'disk full' is the kernel's ENOSPC, not a simulation."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
