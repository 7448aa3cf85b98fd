"""X11: RECORD check, screen layout, double-click settings, focused window (EWMH), window under the pointer.

Everything here talks to the X server through python-xlib on connections it owns; the focus watcher
has its own connection and thread and sleeps in ``select`` until the server sends an event (or until
it is told to stop through a pipe), so an idle desktop costs no CPU.

Double-click settings: X has no standard setting. We read ``Net/DoubleClickTime`` and
``Net/DoubleClickDistance`` from XSETTINGS when a settings daemon (GNOME, Xfce, KDE's bridge) owns
``_XSETTINGS_S<screen>``, and otherwise use 400 ms / 5 px, the GTK defaults.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demotrace.capture.platform import PlatformError, ScreenLayout, WindowInfo
from demotrace.model import Monitor
from demotrace.threads import name_os_thread

DEFAULT_DOUBLE_CLICK_MS = 400
DEFAULT_DOUBLE_CLICK_PX = 5
# How deep to look under a window manager frame for the client window (frame → client is 1-2 levels).
_CLIENT_SEARCH_DEPTH = 3

XSettingValue = int | bytes | tuple[int, int, int, int]


def _pad4(length: int) -> int:
    return (length + 3) & ~3


def parse_xsettings(data: bytes) -> dict[str, XSettingValue]:
    """Decode an ``_XSETTINGS_SETTINGS`` property (XSETTINGS spec 0.5): name → int, bytes or RGBA tuple."""
    if len(data) < 12:
        return {}
    endian = "<" if data[0] == 0 else ">"
    (count,) = struct.unpack_from(endian + "I", data, 8)
    settings: dict[str, XSettingValue] = {}
    offset = 12
    try:
        for _ in range(count):
            kind = data[offset]
            (name_length,) = struct.unpack_from(endian + "H", data, offset + 2)
            name = data[offset + 4 : offset + 4 + name_length].decode("ascii", "replace")
            offset += 4 + _pad4(name_length) + 4  # header, name, last-change serial
            if kind == 0:
                (settings[name],) = struct.unpack_from(endian + "i", data, offset)
                offset += 4
            elif kind == 1:
                (length,) = struct.unpack_from(endian + "I", data, offset)
                settings[name] = data[offset + 4 : offset + 4 + length]
                offset += 4 + _pad4(length)
            elif kind == 2:
                settings[name] = struct.unpack_from(endian + "4H", data, offset)
                offset += 8
            else:
                break  # unknown type: its size is unknown, so nothing after it can be read
    except (struct.error, IndexError):
        pass  # a truncated property: keep what was read
    return settings


def double_click_from_settings(settings: dict[str, XSettingValue]) -> tuple[int, int]:
    time_ms = settings.get("Net/DoubleClickTime")
    distance = settings.get("Net/DoubleClickDistance")
    return (
        time_ms if isinstance(time_ms, int) and time_ms > 0 else DEFAULT_DOUBLE_CLICK_MS,
        distance if isinstance(distance, int) and distance > 0 else DEFAULT_DOUBLE_CLICK_PX,
    )


def _open_display(name: str | None) -> Any:
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


class _WindowReader:
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


class X11Platform:
    name = "x11"

    def __init__(self, display: str | None = None) -> None:
        self.display_name = display
        self._connection = _open_display(display)
        self._reader = _WindowReader(self._connection)
        # The recorder calls us from its processing thread and from the thread that runs it.
        self._lock = threading.Lock()
        self._stack: WindowStack | None = None  # opened on first use: most commands never list windows
        self._stack_lock = threading.Lock()

    def check_input_capture(self) -> None:
        with self._lock:
            record = self._connection.query_extension("RECORD")
        if record is None:
            raise PlatformError(
                "the X server has no RECORD extension, so keyboard and mouse input cannot be recorded; "
                'enable it (Xorg: Section "Module" Load "record"; Xvfb: +extension RECORD)'
            )

    def screen_layout(self) -> ScreenLayout:
        import mss

        with self._lock:
            screen = self._connection.screen()
            width, height = int(screen.width_in_pixels), int(screen.height_in_pixels)
        with mss.MSS(display=self.display_name) as grabber:
            monitors = [
                Monitor(left=m["left"], top=m["top"], width=m["width"], height=m["height"])
                for m in grabber.monitors[1:]
            ]
        return ScreenLayout(width, height, monitors or [Monitor(0, 0, width, height)])

    def double_click(self) -> tuple[int, int]:
        from Xlib import X, error

        with self._lock:
            connection = self._connection
            selection = connection.intern_atom(f"_XSETTINGS_S{connection.get_default_screen()}")
            owner = connection.get_selection_owner(selection)
            if owner in (None, X.NONE, 0):
                return DEFAULT_DOUBLE_CLICK_MS, DEFAULT_DOUBLE_CLICK_PX
            settings_atom = connection.intern_atom("_XSETTINGS_SETTINGS")
            try:
                prop = owner.get_full_property(settings_atom, settings_atom)
            except error.XError:
                prop = None
        if prop is None:
            return DEFAULT_DOUBLE_CLICK_MS, DEFAULT_DOUBLE_CLICK_PX
        value = prop.value
        data = value if isinstance(value, bytes) else bytes(value)
        return double_click_from_settings(parse_xsettings(data))

    def has_window_manager(self) -> bool:
        from Xlib import X

        with self._lock:
            check = self._connection.intern_atom("_NET_SUPPORTING_WM_CHECK")
            return self._connection.screen().root.get_full_property(check, X.AnyPropertyType) is not None

    def pointer_position(self) -> tuple[int, int]:
        with self._lock:
            pointer = self._reader.root.query_pointer()
        return int(pointer.root_x), int(pointer.root_y)

    def window_at_pointer(self) -> WindowInfo | None:
        with self._lock:
            return self._reader.window_at_pointer()

    def focused_window(self) -> WindowInfo | None:
        with self._lock:
            return self._reader.active_window()

    def _window_stack(self) -> WindowStack:
        with self._stack_lock:
            if self._stack is None:
                self._stack = WindowStack(self.display_name)
            return self._stack

    def visible_windows(self) -> list[WindowInfo]:
        return [listed.info for listed in self._window_stack().current()]

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        return window_at(self._window_stack().current(), x, y)

    def password_field_focused(self) -> bool | None:
        tracker = _atspi_focus_tracker()
        return None if tracker is None else tracker.password_focused

    def watch_focus(
        self, on_window: Callable[[WindowInfo | None], None], on_error: Callable[[BaseException], None]
    ) -> FocusWatch:
        watch = FocusWatch(self.display_name, on_window, on_error)
        watch.start()
        return watch

    def close(self) -> None:
        with self._lock:
            self._connection.close()
        with self._stack_lock:
            if self._stack is not None:
                self._stack.close()
                self._stack = None


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

        self._connection = _open_display(display)
        self._reader = _WindowReader(self._connection)
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


class FocusWatch:
    """Follows ``_NET_ACTIVE_WINDOW`` on the root and the focused window's title, on its own connection."""

    def __init__(
        self,
        display: str | None,
        on_window: Callable[[WindowInfo | None], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._connection = _open_display(display)
        self._reader = _WindowReader(self._connection)
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


class _AtspiFocusTracker:
    """Follows keyboard focus over the AT-SPI accessibility bus and remembers whether the focused
    widget is a password field (ROLE_PASSWORD_TEXT). Event-driven: AT-SPI's own main loop runs on a
    daemon thread and calls us on every focus change.

    Needs ``pyatspi`` (the distribution's python3-pyatspi; it is not on PyPI) and a running
    accessibility bus. Neither is on the build machine, so this path is untested there; without them
    :func:`_atspi_focus_tracker` returns None and the recorder relies on window titles alone.
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
def _atspi_focus_tracker() -> _AtspiFocusTracker | None:
    try:
        import pyatspi  # type: ignore[import-not-found]
    except Exception:  # not installed, or no accessibility bus to connect to
        return None
    tracker = _AtspiFocusTracker(pyatspi)
    try:
        tracker.start()
    except Exception:
        return None
    return tracker
