"""The window list behind every frame's blackout, kept between grabs and listed again only on a change.

On a real X server with openbox: after each change a person could make (retitle, move, hide, show,
raise, a new window), the kept list must equal a fresh listing; without a change it is not listed again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from demotrace.capture.platform import WindowInfo
from demotrace.capture.platform.x11_windows import (
    ListedWindow,
    WindowReader,
    WindowStack,
    open_display,
    window_at,
)
from demotrace.demo.desktop import VirtualDesktop

pytestmark = pytest.mark.x11


def xdotool(desktop: VirtualDesktop, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env=desktop.env(), check=True, capture_output=True, text=True)
    return done.stdout.strip()


def fresh_listing(desktop: VirtualDesktop) -> list[ListedWindow]:
    connection = open_display(desktop.display)
    try:
        return WindowReader(connection).visible_windows()
    finally:
        connection.close()


def titles(windows: list[ListedWindow]) -> list[str]:
    return [listed.info.title for listed in windows if listed.info.title.startswith("stack-")]


@pytest.fixture()
def stack(desktop: VirtualDesktop) -> Iterator[WindowStack]:
    watched = WindowStack(desktop.display)
    yield watched
    watched.close()


@pytest.fixture()
def two_xterms(desktop: VirtualDesktop) -> Iterator[tuple[int, int]]:
    processes = []
    ids = []
    for title, geometry in [("stack-one", "60x10+100+100"), ("stack-two", "60x10+200+150")]:
        processes.append(desktop.spawn(["xterm", "-title", title, "-geometry", geometry]))
        found = xdotool(desktop, "search", "--sync", "--onlyvisible", "--name", f"^{title}$")
        ids.append(int(found.split()[0]))
    yield ids[0], ids[1]
    for process in processes:
        process.terminate()
        process.wait(timeout=5)


def settled_equal(desktop: VirtualDesktop, stack: WindowStack) -> list[ListedWindow]:
    """The kept list once it agrees with a fresh listing (the window manager may take a moment to
    finish a change; what matters is that the kept list follows it without being told)."""
    deadline = time.monotonic() + 5
    while True:
        kept, fresh = stack.current(), fresh_listing(desktop)
        if kept == fresh or time.monotonic() > deadline:
            assert kept == fresh
            return kept
        time.sleep(0.05)


def test_an_unchanged_desktop_is_listed_once(
    desktop: VirtualDesktop, stack: WindowStack, two_xterms: tuple[int, int]
) -> None:
    first = settled_equal(desktop, stack)
    listings = stack.listings
    for _ in range(5):
        assert stack.current() is first
    assert stack.listings == listings
    assert titles(first) == ["stack-one", "stack-two"]


def test_every_change_a_person_makes_is_seen_at_the_next_call(
    desktop: VirtualDesktop, stack: WindowStack, two_xterms: tuple[int, int]
) -> None:
    one, two = two_xterms
    settled_equal(desktop, stack)

    xdotool(desktop, "set_window", "--name", "stack-one Online Banking", str(one))
    assert titles(settled_equal(desktop, stack)) == ["stack-one Online Banking", "stack-two"]

    xdotool(desktop, "windowmove", "--sync", str(two), "400", "300")
    moved = [w.info for w in settled_equal(desktop, stack) if w.info.window_id == two]
    assert moved and (moved[0].x, moved[0].y) != (200, 150)

    xdotool(desktop, "windowactivate", "--sync", str(one))
    assert titles(settled_equal(desktop, stack)) == ["stack-two", "stack-one Online Banking"]

    xdotool(desktop, "windowunmap", "--sync", str(two))
    assert titles(settled_equal(desktop, stack)) == ["stack-one Online Banking"]

    xdotool(desktop, "windowmap", "--sync", str(two))
    assert sorted(titles(settled_equal(desktop, stack))) == ["stack-one Online Banking", "stack-two"]


def test_a_title_change_is_seen_even_when_nothing_else_happened(
    desktop: VirtualDesktop, stack: WindowStack, two_xterms: tuple[int, int]
) -> None:
    # The blackout of a denied title must not wait for some other event to refresh the list.
    one, _ = two_xterms
    settled_equal(desktop, stack)
    listings = stack.listings
    xdotool(desktop, "set_window", "--name", "stack-one Medical Records", str(one))
    deadline = time.monotonic() + 5
    while "stack-one Medical Records" not in titles(stack.current()):
        assert time.monotonic() < deadline, "the new title never reached the kept list"
        time.sleep(0.05)
    assert stack.listings > listings


def info(window_id: int, x: int, y: int, width: int, height: int) -> WindowInfo:
    return WindowInfo(
        app="App", title=f"w{window_id}", pid=None, x=x, y=y, width=width, height=height, window_id=window_id
    )


def test_window_at_answers_with_the_topmost_window_at_the_point() -> None:
    bottom = ListedWindow(info(1, 0, 0, 100, 100), True)
    top = ListedWindow(info(2, 50, 50, 100, 100), True)
    tooltip = ListedWindow(info(3, 140, 140, 20, 20), False)
    windows = [bottom, top, tooltip]
    assert window_at(windows, 10, 10) == bottom.info
    assert window_at(windows, 60, 60) == top.info  # overlap: the upper one
    assert window_at(windows, 99, 99) == top.info
    assert window_at(windows, 145, 145) is None  # a window without an application covers the point
    assert window_at(windows, 100, 10) is None  # right edge is exclusive, nothing else there
    assert window_at([], 0, 0) is None
