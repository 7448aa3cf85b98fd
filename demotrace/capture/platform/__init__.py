"""The small per-OS surface the recorder needs; input hooks (pynput) and screen grabs (mss) are portable.

One implementation per OS (``x11.py`` now; ``win32.py``, ``macos.py`` later) behind
:class:`DesktopPlatform`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from demotrace.model import Monitor, Window


class PlatformError(Exception):
    """The desktop cannot be recorded (no display, a missing extension); the message says what to do."""


@dataclass(frozen=True)
class WindowInfo:
    """A top-level window: WM_CLASS class, title, owning process and its outer rectangle on the screen.

    ``instance`` is the WM_CLASS instance part, ``process`` the owning process's name (both "" if
    unknown); the policy matches app names against all three.
    """

    app: str
    title: str
    pid: int | None
    x: int
    y: int
    width: int
    height: int
    window_id: int
    instance: str = ""
    process: str = ""


@dataclass(frozen=True)
class ScreenLayout:
    width: int
    height: int
    monitors: list[Monitor]


def window_event(
    info: WindowInfo | None, layout: ScreenLayout, t: float, wall: float, url: str | None = None
) -> Window:
    """The model's Window event for a window (None: the desktop itself, nothing focused)."""
    if info is None:  # nothing focused: the desktop itself
        return Window(
            t=t,
            wall=wall,
            app="",
            title="",
            pid=None,
            x=0,
            y=0,
            width=layout.width,
            height=layout.height,
            window_id=0,
        )
    return Window(
        t=t,
        wall=wall,
        app=info.app,
        title=info.title,
        pid=info.pid,
        x=info.x,
        y=info.y,
        width=info.width,
        height=info.height,
        window_id=info.window_id,
        url=url,
    )


class WindowWatch(Protocol):
    def stop(self) -> None:
        """Stop watching and wait for the watcher to end."""


class DesktopPlatform(Protocol):
    name: str  # "x11", "win32", "darwin": SessionHeader.platform

    def check_input_capture(self) -> None:
        """Raise PlatformError if global input cannot be observed (X11: no RECORD extension)."""

    def screen_layout(self) -> ScreenLayout: ...

    def double_click(self) -> tuple[int, int]:
        """(max interval in ms, max distance in px) between the clicks of a multi-click."""

    def has_window_manager(self) -> bool:
        """True when a window manager reports the focused window; otherwise use window_at_pointer."""

    def pointer_position(self) -> tuple[int, int]: ...

    def window_at_pointer(self) -> WindowInfo | None:
        """The top-level application window under the pointer, if any."""

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        """The top-level application window on top at a point of the screen, if any (from the same
        window list as ``visible_windows``: no extra round trips to the display server)."""

    def focused_window(self) -> WindowInfo | None:
        """The focused application window (window manager present), if any."""

    def visible_windows(self) -> list[WindowInfo]:
        """Every viewable top-level window, bottom to top of the stacking order, with its outer
        rectangle. Windows that carry no application identity are listed with app and title ""."""

    def password_field_focused(self) -> bool | None:
        """Does the focused widget take a password? None when the platform cannot tell (no
        accessibility bus, or a toolkit that does not expose one)."""

    def watch_focus(
        self, on_window: Callable[[WindowInfo | None], None], on_error: Callable[[BaseException], None]
    ) -> WindowWatch:
        """Call on_window now with the focused window, then on every focus or focused-title change.

        Event-driven: the watcher sleeps until the desktop reports a change. None means no window has focus.
        """

    def close(self) -> None: ...


def open_platform(display: str | None = None) -> DesktopPlatform:
    """The platform of this machine (only X11 so far)."""
    from demotrace.capture.platform.x11 import X11Platform

    return X11Platform(display)
