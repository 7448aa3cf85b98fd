"""The tray icon: a red dot while recording, grey while paused or exempt, and a menu to pause, resume,
see the status, mark a task or open the portal. It holds no state of its own and talks to the recorder
only through the control socket, so it can start before or after the recorder and outlive it.

pystray picks a backend (and the X xorg one opens the display) when it is imported, so it is imported
only when an icon or a menu is built. The xorg backend draws the icon but has no menus: clicking the
icon runs the default item (Pause for the policy's default length, or Resume while paused).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import ControlError
from demotrace.device.notify import notify
from demotrace.wording import plural

PAUSE_CHOICES_MINUTES = (5, 15, 30)
ICON_SIZE = 64
RECORDING_COLOUR = (220, 38, 38, 255)
PAUSED_COLOUR = (140, 140, 140, 255)

log = logging.getLogger(__name__)


def draw_icon(recording: bool, size: int = ICON_SIZE) -> Image.Image:
    """A filled dot on a transparent square: red while recording, grey otherwise."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    margin = max(1, size // 8)
    colour = RECORDING_COLOUR if recording else PAUSED_COLOUR
    ImageDraw.Draw(image).ellipse((margin, margin, size - margin - 1, size - margin - 1), fill=colour)
    return image


def status_text(status: dict[str, Any]) -> str:
    """One or two lines for a person: what the recorder does now."""
    state = status.get("state")
    if state == "exempt":
        return "Exempt: nothing is recorded on this device."
    if state == "awaiting notice":
        return "Nothing is recorded until you read and accept the notice (menu: Read the notice)."
    if state == "paused":
        minutes = float(status.get("remaining_seconds") or 0) / 60
        return f"Paused: recording resumes in {minutes:.0f} min."
    lines = ["Recording where the policy allows it."]
    pending = status.get("spool_pending")
    if isinstance(pending, int):
        lines.append(f"{plural(pending, 'record')} waiting to upload.")
    return "\n".join(lines)


@dataclass(frozen=True)
class TrayEntry:
    label: str
    action: Callable[[], None]
    enabled: bool = True
    default: bool = False


class TrayActions:
    """What each menu item does; every action goes through the control socket and reports problems
    as a notification instead of raising (a tray must never crash on a click)."""

    def __init__(
        self,
        client: ControlClient,
        portal_url: str | None = None,
        *,
        ask_task_text: Callable[[], str | None] | None = None,
        open_url: Callable[[str], object] = webbrowser.open,
        tell: Callable[[str, str], object] = notify,
        open_notice: Callable[[Path], object] | None = None,
    ) -> None:
        self.client = client
        self.open_notice = open_notice or open_notice_dialog
        self.portal_url = portal_url
        self.ask_task_text = ask_task_text or ask_task_text_with_tk
        self.open_url = open_url
        self.tell = tell

    def _safely(self, title: str, request: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return request()
        except ControlError as error:
            self.tell(title, str(error))
            return None

    def pause(self, minutes: float | None) -> None:
        answer = self._safely("Cannot pause", lambda: self.client.pause(minutes))
        if answer is not None and answer.get("paused") is False:
            self.tell("Nothing to pause", "This device is exempt from recording: nothing is recorded.")
        elif answer is not None and answer.get("capped"):
            self.tell("Pause shortened", str(answer.get("message", "")))

    def resume(self) -> None:
        self._safely("Cannot resume", self.client.resume)

    def show_status(self) -> None:
        answer = self._safely("demotrace", self.client.status)
        if answer is not None:
            self.tell("demotrace", status_text(answer))

    def start_task(self) -> None:
        text = self.ask_task_text()
        if text is None or not text.strip():
            return
        if self._safely("Cannot start the task", lambda: self.client.task_start(text)) is not None:
            self.tell("Task started", text.strip())

    def end_task(self) -> None:
        self._safely("Cannot end the task", self.client.task_end)

    def open_portal(self) -> None:
        if self.portal_url:
            self.open_url(self.portal_url)

    def read_notice(self) -> None:
        """The notice in its own window (accepting it there tells the recorder)."""
        self.open_notice(self.client.path)


def open_notice_dialog(socket_path: Path) -> subprocess.Popen[bytes]:
    """Start the notice window (demotrace/device/notice_dialog.py) as a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "demotrace.device.notice_dialog", "--socket", str(socket_path)],
        stdin=subprocess.DEVNULL,
    )


def menu_entries(actions: TrayActions, paused: bool = False) -> list[TrayEntry]:
    """The menu, top to bottom. The default item (what a click on the icon does) is Resume while
    paused and Pause for the policy's default length otherwise."""
    entries = [
        TrayEntry(f"Pause {minutes} min", _bind_pause(actions, minutes), default=False)
        for minutes in PAUSE_CHOICES_MINUTES
    ]
    entries.insert(0, TrayEntry("Pause", _bind_pause(actions, None), default=not paused))
    entries += [
        TrayEntry("Resume", actions.resume, default=paused),
        TrayEntry("Status", actions.show_status),
        TrayEntry("Start task…", actions.start_task),
        TrayEntry("End task", actions.end_task),
        TrayEntry("Open portal", actions.open_portal, enabled=bool(actions.portal_url)),
        TrayEntry("Read the notice…", actions.read_notice),
    ]
    return entries


def _bind_pause(actions: TrayActions, minutes: float | None) -> Callable[[], None]:
    def pause() -> None:
        actions.pause(minutes)

    return pause


def build_menu(entries: list[TrayEntry]) -> Any:
    """A pystray Menu of ``entries`` (imports pystray: needs a display on X)."""
    import pystray  # type: ignore[import-untyped]  # no stubs; pyproject has no override for it

    def item(entry: TrayEntry) -> Any:
        # pystray passes (icon, item) to callables it can inspect; give it a two-argument function.
        def run(_icon: object, _item: object) -> None:
            entry.action()

        # The plain "Pause" (policy default) is only the click action, not a menu line.
        return pystray.MenuItem(
            entry.label, run, enabled=entry.enabled, default=entry.default, visible=entry.label != "Pause"
        )

    return pystray.Menu(*(item(entry) for entry in entries))


def ask_task_text_with_tk() -> str | None:
    """Ask for the task's description in a small Tk dialog (None if cancelled)."""
    import tkinter
    from tkinter import simpledialog

    root = tkinter.Tk()
    root.withdraw()
    try:
        return simpledialog.askstring("demotrace", "What task are you starting?", parent=root)
    finally:
        root.destroy()


class TrayUnavailable(Exception):
    """There is nowhere to show the icon; the message says what to use instead."""


def xembed_tray_present(display: str | None = None) -> bool:
    """Whether an XEmbed system tray runs on the screen (what pystray's X backend docks into)."""
    from Xlib import X
    from Xlib.display import Display

    connection = Display(display)
    try:
        selection = connection.intern_atom(f"_NET_SYSTEM_TRAY_S{connection.get_default_screen()}")
        return bool(connection.get_selection_owner(selection) != X.NONE)
    finally:
        connection.close()


class Tray:
    """The running icon: follows the recorder's state through the socket's ``watch`` stream."""

    def __init__(self, client: ControlClient, portal_url: str | None = None) -> None:
        self.client = client
        self.actions = TrayActions(client, portal_url)
        self.icon: Any = None
        self._stop = threading.Event()
        self._notice_shown = False  # the first-run window opens once per tray run, not at every update

    def _apply(self, status: dict[str, Any] | None) -> None:
        awaiting = status is not None and status.get("state") == "awaiting notice"
        if awaiting and not self._notice_shown:
            self._notice_shown = True
            self.actions.read_notice()
        # Once accepted, a later widening of the policy opens the window again.
        self._notice_shown = self._notice_shown and awaiting
        recording = status is not None and status.get("state") == "recording"
        paused = status is not None and status.get("state") == "paused"
        self.icon.icon = draw_icon(recording)
        self.icon.title = status_text(status) if status is not None else "demotrace: no recorder running"
        self.icon.menu = build_menu(menu_entries(self.actions, paused=paused))

    def _follow(self) -> None:
        """Runs on its own thread: blocks on the watch stream; reconnects after the recorder restarts,
        waiting on the stop Event between tries rather than spinning."""
        while not self._stop.is_set():
            try:
                for status in self.client.watch(self._stop):
                    self._apply(status)
            except ControlError as error:
                log.debug("tray: %s", error)
            self._apply(None)
            self._stop.wait(5.0)

    def run(self) -> None:
        """Show the icon until stop() (blocks: pystray's loop runs on this thread).

        Raises TrayUnavailable when the desktop has no system tray to show it in."""
        import pystray

        if pystray.Icon.__module__ == "pystray._xorg" and not xembed_tray_present():
            raise TrayUnavailable(
                "this desktop has no system tray (nothing owns the XEmbed tray selection): use "
                "`demotrace status`, `pause` and `resume`, or add a tray to the panel"
            )

        self.icon = pystray.Icon(
            "demotrace",
            icon=draw_icon(False),
            title="demotrace",
            menu=build_menu(menu_entries(self.actions)),
        )

        def setup(icon: Any) -> None:
            icon.visible = True
            threading.Thread(target=self._follow, name="demotrace-tray-watch", daemon=True).start()

        self.icon.run(setup=setup)

    def stop(self) -> None:
        self._stop.set()
        if self.icon is not None:
            self.icon.stop()


def run_tray(socket_path: Path | None = None, portal_url: str | None = None) -> None:
    Tray(ControlClient(socket_path), portal_url).run()
