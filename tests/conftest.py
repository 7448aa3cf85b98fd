from __future__ import annotations

from collections.abc import Iterator

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
