"""X11: the desktop platform (RECORD check, screen layout, double-click settings) over its window
stack (x11_windows.py), focus watch (x11_focus.py) and the AT-SPI password-field probe (atspi.py).

Everything here talks to the X server through python-xlib on connections it owns.

Double-click settings: X has no standard setting. We read ``Net/DoubleClickTime`` and
``Net/DoubleClickDistance`` from XSETTINGS when a settings daemon (GNOME, Xfce, KDE's bridge) owns
``_XSETTINGS_S<screen>``, and otherwise use 400 ms / 5 px, the GTK defaults.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable

from demotrace.capture.platform import PlatformError, ScreenLayout, WindowInfo
from demotrace.capture.platform.atspi import atspi_focus_tracker
from demotrace.capture.platform.x11_focus import FocusWatch
from demotrace.capture.platform.x11_windows import WindowReader, WindowStack, open_display, window_at
from demotrace.model import Monitor

DEFAULT_DOUBLE_CLICK_MS = 400
DEFAULT_DOUBLE_CLICK_PX = 5

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


class X11Platform:
    name = "x11"

    def __init__(self, display: str | None = None) -> None:
        self.display_name = display
        self._connection = open_display(display)
        self._reader = WindowReader(self._connection)
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
        tracker = atspi_focus_tracker()
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
