"""X11 windows: the reader of window facts (EWMH focus, WM_CLASS, title, pid, the top-level stacking
order) and the window stack that keeps a listing until X events say it changed.

Everything here talks to the X server through python-xlib on connections it owns; each reader and
stack has its own connection.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demotrace.capture.platform import PlatformError, WindowInfo

# How deep to look under a window manager frame for the client window (frame → client is 1-2 levels).
_CLIENT_SEARCH_DEPTH = 3


def open_display(name: str | None) -> Any:
    from Xlib import display, error

    try:
        return display.Display(name)
    except (error.DisplayError, error.ConnectionClosedError, OSError) as failure:
        shown = name or os.environ.get("DISPLAY") or "(DISPLAY not set)"
        raise PlatformError(f"cannot open X display {shown}: {failure}") from failure


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


# The kernel keeps a process's name (comm) to 15 bytes.
_COMM_LENGTH = 15


def process_name(pid: int | None, proc: Path = Path("/proc")) -> str:
    """The name of a local process ("" if unknown): its comm, or the program's file name when comm was
    cut at 15 bytes (so "polkit-gnome-authentication-agent-1" matches a denylist in full)."""
    if pid is None or pid <= 0:
        return ""
    try:
        comm = (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""
    if len(comm) >= _COMM_LENGTH:
        with contextlib.suppress(OSError):
            argv0 = (proc / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0]
            program = os.path.basename(argv0.decode("utf-8", "replace"))
            if program.startswith(comm):
                return program
    return comm


@dataclass(frozen=True)
class ListedWindow:
    """A viewable top-level window; ``has_client`` is False for one with no application window in it
    (a bare frame, a tooltip without WM_CLASS): it hides what is below but names no application."""

    info: WindowInfo
    has_client: bool


def window_at(windows: Sequence[ListedWindow], x: int, y: int) -> WindowInfo | None:
    """The application window on top at a point of the screen (``windows`` bottom to top), or None
    when the topmost window there has no application window (or there is none)."""
    for listed in reversed(windows):
        info = listed.info
        if info.x <= x < info.x + info.width and info.y <= y < info.y + info.height:
            return info if listed.has_client else None
    return None


# What the policy reads of a client window: WM_CLASS (instance, class), pid, title, process name.
ClientFacts = tuple[tuple[str, str] | None, int | None, str, str]


@dataclass
class KnownWindows:
    """What a window listing found and can reuse until X events say it changed: the client window
    inside each top-level (by top-level id) and each client's facts (by client id)."""

    clients: dict[int, Any] = field(default_factory=dict)
    facts: dict[int, ClientFacts] = field(default_factory=dict)


class WindowReader:
    """Reads window facts on one connection. Not thread-safe: each thread gets its own reader."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.root = connection.screen().root
        atom = connection.intern_atom
        self.net_active_window = atom("_NET_ACTIVE_WINDOW")
        self.net_wm_name = atom("_NET_WM_NAME")
        self.net_wm_pid = atom("_NET_WM_PID")
        self.utf8_string = atom("UTF8_STRING")
        self.wm_state = atom("WM_STATE")
        self.wm_name = atom("WM_NAME")

    def _property(self, window: Any, atom: int, kind: int) -> Any:
        prop = window.get_full_property(atom, kind)
        return None if prop is None else prop.value

    def active_window_id(self) -> int:
        from Xlib import X

        value = self._property(self.root, self.net_active_window, X.AnyPropertyType)
        return int(value[0]) if value is not None and len(value) else 0

    def top_level_of(self, window: Any) -> Any:
        """The ancestor that is a child of the root: the WM frame, or the window itself without a WM."""
        current = window
        while True:
            parent = current.query_tree().parent
            if parent is None or parent.id in (0, self.root.id):
                return current
            current = parent

    def client_of(self, top_level: Any, depth: int = _CLIENT_SEARCH_DEPTH) -> Any | None:
        """The application window at or under a top-level: the first one carrying WM_CLASS."""
        if top_level.get_wm_class() is not None:
            return top_level
        if depth == 0:
            return None
        for child in top_level.query_tree().children:
            found = self.client_of(child, depth - 1)
            if found is not None:
                return found
        return None

    def title_of(self, window: Any) -> str:
        net_name = self._property(window, self.net_wm_name, self.utf8_string)
        if net_name:
            return _text(net_name)
        return _text(window.get_wm_name())

    def describe(self, client: Any) -> WindowInfo | None:
        """WindowInfo of a client window (geometry of its top-level frame), None if it vanished."""
        from Xlib import error

        try:
            wm_class = client.get_wm_class()
            top_level = self.top_level_of(client)
            origin = self.root.translate_coords(top_level, 0, 0)
            geometry = top_level.get_geometry()
            pid = self.pid_of(client)
            # translate_coords gives the inside of the border; report the outer rectangle.
            border = int(geometry.border_width)
            return WindowInfo(
                app=_text(wm_class[1]) if wm_class else "",
                title=self.title_of(client),
                pid=pid,
                x=int(origin.x) - border,
                y=int(origin.y) - border,
                width=int(geometry.width) + 2 * border,
                height=int(geometry.height) + 2 * border,
                window_id=int(client.id),
                instance=_text(wm_class[0]) if wm_class else "",
                process=process_name(pid),
            )
        except error.XError:
            return None  # windows come and go between two requests

    def pid_of(self, client: Any) -> int | None:
        from Xlib import X

        value = self._property(client, self.net_wm_pid, X.AnyPropertyType)
        return int(value[0]) if value is not None and len(value) else None

    def visible_windows(
        self, watch_clients: Callable[[Any], None] | None = None, known: KnownWindows | None = None
    ) -> list[ListedWindow]:
        """Viewable children of the root, bottom to top (XQueryTree lists them in stacking order), so
        override-redirect popups and menus are included, not only what the window manager manages.

        ``watch_clients`` is called with each client window found before its properties are read (so a
        change after the read is reported to whoever subscribed there). With ``known``, clients and
        their properties found before are reused, and what is read is remembered there: the caller
        must forget what X events say changed (see ``WindowStack``)."""
        from Xlib import X, error

        try:
            children = self.root.query_tree().children
        except error.XError:
            return []
        windows: list[ListedWindow] = []
        for top_level in children:
            top_id = int(top_level.id)
            try:
                attributes = top_level.get_attributes()
                if attributes.map_state != X.IsViewable or attributes.win_class != X.InputOutput:
                    continue  # unmapped, or input-only: nothing of it is on the screen
                geometry = top_level.get_geometry()
                client = known.clients.get(top_id) if known is not None else None
                if client is None:
                    client = self.client_of(top_level)
                    if client is not None:
                        if watch_clients is not None:
                            watch_clients(client)
                        if known is not None:
                            known.clients[top_id] = client
                            known.facts.pop(int(client.id), None)  # a new client behind a reused id
                facts = known.facts.get(int(client.id)) if known is not None and client is not None else None
                if facts is None:
                    facts = self._client_facts(client)
                    if known is not None and client is not None:
                        known.facts[int(client.id)] = facts
            except error.XError:
                if known is not None:
                    known.clients.pop(top_id, None)
                continue  # destroyed while we looked: no longer on the screen
            wm_class, pid, title, process = facts
            border = int(geometry.border_width)
            info = WindowInfo(
                app=_text(wm_class[1]) if wm_class else "",
                title=title,
                pid=pid,
                x=int(geometry.x),
                y=int(geometry.y),
                width=int(geometry.width) + 2 * border,
                height=int(geometry.height) + 2 * border,
                window_id=int(client.id) if client is not None else top_id,
                instance=_text(wm_class[0]) if wm_class else "",
                process=process,
            )
            windows.append(ListedWindow(info, client is not None))
        if known is not None:  # forget windows no longer on the screen (a long session sees many)
            shown = {listed.info.window_id for listed in windows}
            known.clients = {top: client for top, client in known.clients.items() if int(client.id) in shown}
            known.facts = {client: facts for client, facts in known.facts.items() if client in shown}
        return windows

    def _client_facts(self, client: Any | None) -> ClientFacts:
        if client is None:
            return (None, None, "", "")
        pid = self.pid_of(client)
        return (client.get_wm_class(), pid, self.title_of(client), process_name(pid))

    def active_window(self) -> WindowInfo | None:
        from Xlib import error

        try:
            window_id = self.active_window_id()
        except error.XError:
            return None
        if not window_id:
            return None
        return self.describe(self.connection.create_resource_object("window", window_id))

    def window_at_pointer(self) -> WindowInfo | None:
        from Xlib import error

        try:
            child = self.root.query_pointer().child
            if not child or child == 0:
                return None
            client = self.client_of(child)
        except error.XError:
            return None
        return None if client is None else self.describe(client)


class WindowStack:
    """The viewable top-level windows, listed again only when the X server reports a change.

    Listing costs dozens of round trips, and frames need the list twice per grab (blackout), so it is
    kept and invalidated by events on a connection of its own: SubstructureNotify on the root (a
    top-level mapped, unmapped, moved, resized, restacked, reparented) and PropertyNotify on every
    listed client for the properties the policy reads (class, title, pid). ``current`` makes one round
    trip first, so every change the server made before the call has been reported when it answers.
    Thread-safe.
    """

    def __init__(self, display: str | None) -> None:
        from Xlib import X, Xatom

        self._connection = open_display(display)
        self._reader = WindowReader(self._connection)
        self._lock = threading.Lock()
        self._windows: list[ListedWindow] | None = None
        atom = self._connection.intern_atom
        self._policy_properties = {
            self._reader.net_wm_name,
            self._reader.net_wm_pid,
            Xatom.WM_NAME,
            Xatom.WM_CLASS,
            atom("WM_STATE"),
        }
        self._wm_class = Xatom.WM_CLASS
        self._known = KnownWindows()
        self._reader.root.change_attributes(event_mask=X.SubstructureNotifyMask)
        self.listings = 0  # listings so far: for tests and benchmarks

    def current(self) -> list[ListedWindow]:
        with self._lock:
            self._connection.sync()
            if self._drain_changes() or self._windows is None:
                self._windows = self._reader.visible_windows(self._watch, self._known)
                self.listings += 1
            return self._windows

    def _drain_changes(self) -> bool:
        """Read the events that came since the last call; forget what they changed. True if the list
        must be read again. A listing costs ~47 ms of CPU with every client searched for and read (an
        openbox frame has a dozen subwindows), ~3 ms when only geometry and stacking are read again."""
        from Xlib import X

        changed = False
        connection, known = self._connection, self._known
        while connection.pending_events():
            event = connection.next_event()
            if event.type == X.PropertyNotify:
                if event.atom in self._policy_properties:
                    changed = True
                    known.facts.pop(int(event.window.id), None)
                    if event.atom == self._wm_class:
                        known.clients.clear()  # which window is the client is decided by WM_CLASS
            elif event.type == X.MappingNotify:
                continue  # a keyboard or pointer mapping: no window changed
            else:
                changed = True
                if event.type != X.ConfigureNotify:  # moved, resized or restacked: same client
                    known.clients.pop(int(event.window.id), None)
        return changed

    def _watch(self, client: Any) -> None:
        from Xlib import X

        # Before its properties are read, so a change after the read comes as an event. Asked again at
        # every listing (a request without a reply): a window id may be reused by a new window.
        client.change_attributes(event_mask=X.PropertyChangeMask)

    def close(self) -> None:
        with self._lock:
            self._connection.close()
