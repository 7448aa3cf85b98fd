"""Is the focused widget a password field? Asked over the AT-SPI accessibility bus (Linux desktops)."""

from __future__ import annotations

import functools
import threading
from typing import Any


class AtspiFocusTracker:
    """Follows keyboard focus over the AT-SPI accessibility bus and remembers whether the focused
    widget is a password field (ROLE_PASSWORD_TEXT). Event-driven: AT-SPI's own main loop runs on a
    daemon thread and calls us on every focus change.

    Needs ``pyatspi`` (the distribution's python3-pyatspi; it is not on PyPI) and a running
    accessibility bus. Neither is on the build machine, so this path is untested there; without them
    :func:`atspi_focus_tracker` returns None and the recorder relies on window titles alone.
    """

    def __init__(self, pyatspi: Any) -> None:
        self._pyatspi = pyatspi
        self.password_focused: bool | None = None

    def start(self) -> None:
        registry = self._pyatspi.Registry
        registry.registerEventListener(self._on_focus, "object:state-changed:focused")
        threading.Thread(target=registry.start, name="demotrace-atspi", daemon=True).start()

    def _on_focus(self, event: Any) -> None:
        if not event.detail1:
            return  # focus left this widget; the one that gains it reports next
        try:
            self.password_focused = event.source.getRole() == self._pyatspi.ROLE_PASSWORD_TEXT
        except Exception:  # the widget went away, or the bus broke: we no longer know
            self.password_focused = None


@functools.cache
def atspi_focus_tracker() -> AtspiFocusTracker | None:
    try:
        import pyatspi  # type: ignore[import-not-found]
    except Exception:  # not installed, or no accessibility bus to connect to
        return None
    tracker = AtspiFocusTracker(pyatspi)
    try:
        tracker.start()
    except Exception:
        return None
    return tracker
