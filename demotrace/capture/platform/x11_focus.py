"""X11 focus watch: follows the focused window and its title on a connection and thread of its own.

The watcher sleeps in ``select`` until the server sends an event (or until it is told to stop through a
pipe), so an idle desktop costs no CPU.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from typing import Any

from demotrace.capture.platform import WindowInfo
from demotrace.capture.platform.x11_windows import WindowReader, open_display
from demotrace.threads import name_os_thread


class FocusWatch:
    """Follows ``_NET_ACTIVE_WINDOW`` on the root and the focused window's title, on its own connection."""

    def __init__(
        self,
        display: str | None,
        on_window: Callable[[WindowInfo | None], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._connection = open_display(display)
        self._reader = WindowReader(self._connection)
        self._on_window = on_window
        self._on_error = on_error
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="demotrace-focus", daemon=True)
        self._watched: Any = None
        self._last: WindowInfo | None = None

    def start(self) -> None:
        from Xlib import X

        # Subscribe before the first read, so a change between the two is not missed.
        self._reader.root.change_attributes(event_mask=X.PropertyChangeMask)
        self._connection.sync()
        self._refresh(force=True)
        self._thread.start()

    def stop(self) -> None:
        os.write(self._wake_write, b"x")
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._connection.close()

    def _watch_titles_of(self, window_id: int) -> None:
        from Xlib import X, error

        if self._watched is not None and self._watched.id == window_id:
            return
        try:
            if self._watched is not None:
                self._watched.change_attributes(event_mask=X.NoEventMask)
        except error.XError:
            pass  # the previous window is gone
        self._watched = None
        if window_id:
            window = self._connection.create_resource_object("window", window_id)
            try:
                window.change_attributes(event_mask=X.PropertyChangeMask)
                self._watched = window
            except error.XError:
                pass

    def _refresh(self, force: bool = False) -> None:
        info = self._reader.active_window()
        if info is None and not force:
            # Window managers clear _NET_ACTIVE_WINDOW for a moment while focus moves between windows;
            # reporting that would put a phantom "desktop" between every two windows.
            return
        self._watch_titles_of(info.window_id if info is not None else 0)
        if force or info != self._last:
            self._last = info
            self._on_window(info)

    def _run(self) -> None:
        name_os_thread()
        from Xlib import X

        connection = self._connection
        title_atoms = {self._reader.net_wm_name, self._reader.wm_name}
        try:
            while True:
                # Events may already sit in python-xlib's queue (read along with a reply): drain first.
                while connection.pending_events():
                    event = connection.next_event()
                    if event.type != X.PropertyNotify:
                        continue
                    if (
                        event.window.id == self._reader.root.id
                        and event.atom == self._reader.net_active_window
                    ) or (
                        self._watched is not None
                        and event.window.id == self._watched.id
                        and event.atom in title_atoms
                    ):
                        self._refresh()
                readable, _, _ = select.select([connection.fileno(), self._wake_read], [], [])
                if self._wake_read in readable:
                    return
        except Exception as failure:  # the X connection broke: the recorder decides what that means
            self._on_error(failure)
