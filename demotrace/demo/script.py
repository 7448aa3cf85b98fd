"""The scripted, human-paced demo session: drives the Tk form and an xterm, returns what it injected.

One cycle exercises every action kind: clicks into fields and typing (with a corrected typo), a
double- and a triple-click on the notes, list scrolling down and back up around a click, a drag of the
canvas item, a middle-click, a right-click menu closed with Escape, ctrl+s, and a command typed into the
xterm. With ``seconds`` the cycle repeats (varied by the seed) until the time is up.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Xlib import X

from demotrace.demo.desktop import DesktopError, VirtualDesktop
from demotrace.demo.tkapp import CLASS_NAME as FORM_CLASS
from demotrace.demo.xdriver import XDriver
from demotrace.model import Action

TERMINAL_CLASS = "DemoTerm"
TERMINAL_ARGV = ["xterm", "-class", TERMINAL_CLASS, "-title", "demo terminal", "-geometry", "100x30+1000+100"]
DRAG_DISTANCE_PX = 150
CANVAS_MARGIN_PX = 10

NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson",
         "Margaret Hamilton", "Donald Knuth", "Frances Allen", "John Backus")  # fmt: skip
DOMAINS = ("example.org", "example.com", "test.example.net")
SENTENCES = (
    "Call the supplier about the late invoice",
    "Quarterly review moved to Thursday morning",
    "Ask Sam for the updated floor plan",
    "Remember to renew the parking permit",
    "Order more paper for the second printer",
    "Send the draft agenda before Friday noon",
    "Check the backup logs from last weekend",
    "Book a room for the onboarding session",
)
COMMANDS = ("echo hello from demotrace", "ls -la", "pwd", "date", "uname -a", "echo $HOME", "whoami")


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


@dataclass
class DemoApps:
    """The processes start_demo_apps started; stop() ends them (the form writes its state on SIGTERM)."""

    form: subprocess.Popen[bytes]
    terminal: subprocess.Popen[bytes] | None

    def stop(self, timeout: float = 5.0) -> None:
        for process in (self.form, self.terminal):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (self.form, self.terminal):
            if process is not None:
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# ----- app state and windows ------------------------------------------------------------------------


def read_app_state(state_file: Path) -> dict[str, Any]:
    """The form's last written state ({} before its first write)."""
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except FileNotFoundError:
        return {}
    return state


def _layout(state_file: Path) -> dict[str, Any]:
    layout: dict[str, Any] | None = read_app_state(state_file).get("layout")
    if layout is None:
        raise DesktopError(f"the demo form has not written its layout to {state_file}")
    return layout


def _box(layout: dict[str, Any], name: str) -> Box:
    entry = layout[name]
    return Box(entry["x"], entry["y"], entry["width"], entry["height"])


def _client_windows(connection: Any) -> list[Any]:
    """Top-level client windows, bottom to top: the window manager's stacking list, else the X tree."""
    root = connection.screen().root
    stacking = root.get_full_property(connection.intern_atom("_NET_CLIENT_LIST_STACKING"), X.AnyPropertyType)
    if stacking is not None:
        return [connection.create_resource_object("window", wid) for wid in stacking.value]
    found: list[Any] = []

    def walk(window: Any) -> None:
        for child in window.query_tree().children:
            if child.get_wm_class() is not None:
                found.append(child)
            else:
                walk(child)

    walk(root)
    return found


def find_window(display: str, wm_class: str) -> Box | None:
    """Root-coordinate box of the topmost viewable window of class ``wm_class``, if there is one."""
    from Xlib import display as xdisplay

    connection = xdisplay.Display(display)
    try:
        root = connection.screen().root
        for window in reversed(_client_windows(connection)):
            names = window.get_wm_class()
            if names is None or names[1] != wm_class:
                continue
            if window.get_attributes().map_state != X.IsViewable:
                continue
            geometry = window.get_geometry()
            origin = window.translate_coords(root, 0, 0)
            # translate_coords gives root's position relative to the window, hence the signs.
            return Box(-origin.x, -origin.y, geometry.width, geometry.height)
        return None
    finally:
        connection.close()


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DesktopError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_demo_apps(
    desktop: VirtualDesktop, state_file: Path, *, xterm: bool = True, timeout: float = 20.0
) -> DemoApps:
    """Start the xterm and the Tk form on ``desktop`` and wait until both are mapped where they will stay."""
    state_file.unlink(missing_ok=True)
    terminal = desktop.spawn(TERMINAL_ARGV) if xterm else None
    form = desktop.spawn([sys.executable, "-m", "demotrace.demo.tkapp", "--state-file", str(state_file)])
    apps = DemoApps(form, terminal)
    try:
        if xterm:
            _wait_until(
                lambda: find_window(desktop.display, TERMINAL_CLASS) is not None, timeout, "the xterm"
            )
        _wait_until(lambda: "layout" in read_app_state(state_file), timeout, "the demo form's layout")
        # The window manager reparents and places the window after it is first mapped: wait until the
        # reported layout stops changing, so drivers aim at where the widgets will stay.
        previous: dict[str, Any] = {}

        def layout_settled() -> bool:
            nonlocal previous
            current = _layout(state_file)
            settled = current == previous and find_window(desktop.display, FORM_CLASS) is not None
            previous = current
            return settled

        _wait_until(layout_settled, timeout, "the demo form's layout to settle")
    except BaseException:
        apps.stop()
        raise
    return apps


# ----- the session --------------------------------------------------------------------------------


def with_corrected_typo(sentence: str, rng: random.Random) -> str:
    """The sentence as typed by someone who swapped two letters of a word and fixed them with backspace."""
    words = sentence.split(" ")
    candidates = [i for i, word in enumerate(words) if i > 0 and len(word) >= 4 and word.isalpha()]
    index = rng.choice(candidates)
    word = words[index]
    words[index] = word[:-2] + word[-1] + word[-2] + "\b\b" + word[-2:]
    return " ".join(words)


def _word_columns(line: str) -> list[tuple[int, str]]:
    """(first column, word) of every word in a line."""
    columns, column = [], 0
    for word in line.split(" "):
        columns.append((column, word))
        column += len(word) + 1
    return columns


class _Session:
    def __init__(self, driver: XDriver, rng: random.Random, state_file: Path, display: str) -> None:
        self.driver = driver
        self.rng = rng
        self.state_file = state_file
        self.display = display

    def _aim(self, box: Box, spread: float = 0.3) -> tuple[int, int]:
        """A point near the box's centre, jittered as a person's aim is."""
        x, y = box.centre
        return (
            x + round(self.rng.uniform(-spread, spread) * box.width / 2),
            y + round(self.rng.uniform(-spread, spread) * box.height / 2),
        )

    def _click_widget(self, name: str) -> None:
        self.driver.click(*self._aim(_box(_layout(self.state_file), name)))

    def clear_form(self) -> None:
        self._click_widget("clear")

    def fill_fields(self) -> None:
        name = self.rng.choice(NAMES)
        self._click_widget("name")
        self.driver.type_text(name)
        self._click_widget("email")
        self.driver.type_text(f"{name.lower().replace(' ', '.')}@{self.rng.choice(DOMAINS)}")

    def write_notes(self) -> str:
        sentence = self.rng.choice(SENTENCES)
        self._click_widget("notes")
        self.driver.type_text(with_corrected_typo(sentence, self.rng))
        return sentence

    def select_in_notes(self, line: str) -> None:
        text = _layout(self.state_file)["notes_text"]

        def column_point(column: float) -> tuple[int, int]:
            return round(text["x"] + column * text["char_width"]), text["y"] + text["line_height"] // 2

        words = _word_columns(line)
        first, second = self.rng.sample(range(len(words)), 2)
        column, word = words[first]
        self.driver.double_click(*column_point(column + len(word) / 2))
        column, word = words[second]
        self.driver.triple_click(*column_point(column + len(word) / 2))

    def scroll_list(self) -> None:
        layout = _layout(self.state_file)
        listbox = _box(layout, "list")
        ticks = self.rng.randint(3, 6)
        x, y = self._aim(listbox, 0.4)
        self.driver.scroll(x, y, dy=-ticks)
        # Pick a row in the upper part of the view, clear of the partly visible last row.
        row = self.rng.randint(1, max(1, layout["list_visible_rows"] // 2))
        row_height = layout["list_row_height"]
        self.driver.click(x, listbox.y + 2 + row * row_height + row_height // 2)
        self.driver.scroll(x, y, dy=ticks)

    def move_item(self) -> None:
        layout = _layout(self.state_file)
        item, canvas = _box(layout, "item"), _box(layout, "canvas")
        start_x, start_y = self._aim(item, 0.5)
        distance = DRAG_DISTANCE_PX + self.rng.randint(-8, 8)

        def stays_inside(angle: float) -> bool:
            dx, dy = distance * math.cos(angle), distance * math.sin(angle)
            return (
                canvas.x + CANVAS_MARGIN_PX <= item.x + dx
                and item.x + item.width + dx <= canvas.x + canvas.width - CANVAS_MARGIN_PX
                and canvas.y + CANVAS_MARGIN_PX <= item.y + dy
                and item.y + item.height + dy <= canvas.y + canvas.height - CANVAS_MARGIN_PX
            )

        inside = [
            angle for angle in (math.radians(degrees) for degrees in range(0, 360, 15)) if stays_inside(angle)
        ]
        towards_centre = math.atan2(canvas.centre[1] - item.centre[1], canvas.centre[0] - item.centre[0])
        angle = self.rng.choice(inside) if inside else towards_centre
        end_x = start_x + round(distance * math.cos(angle))
        end_y = start_y + round(distance * math.sin(angle))
        self.driver.drag(start_x, start_y, end_x, end_y)
        # The item moved with the pointer: it now sits under the release point.
        self.driver.middle_click(end_x + self.rng.randint(-5, 5), end_y + self.rng.randint(-5, 5))

    def open_and_close_menu(self) -> None:
        layout = _layout(self.state_file)
        item, canvas = _box(layout, "item"), _box(layout, "canvas")
        corners = [
            (canvas.x + 30, canvas.y + 30),
            (canvas.x + canvas.width - 30, canvas.y + 30),
            (canvas.x + 30, canvas.y + canvas.height - 30),
            (canvas.x + canvas.width - 30, canvas.y + canvas.height - 30),
        ]
        # On the empty canvas, away from the item, so the right-click is about the canvas itself.
        x, y = max(corners, key=lambda point: math.dist(point, item.centre))
        self.driver.right_click(x + self.rng.randint(-10, 10), y + self.rng.randint(-10, 10))
        self.driver.press("esc")

    def save(self) -> None:
        self.driver.hotkey("ctrl", "s")

    def use_terminal(self) -> None:
        terminal = find_window(self.display, TERMINAL_CLASS)
        if terminal is None:
            raise DesktopError("the demo xterm is not on screen")
        self.driver.click(*self._aim(terminal, 0.5))
        self.driver.type_text(self.rng.choice(COMMANDS))
        self.driver.press("enter")
        # Back to the form, on its status bar: a click that takes focus and changes nothing else.
        self._click_widget("status")

    def cycle(self, index: int, xterm: bool) -> list[Callable[[], object]]:
        """One cycle as steps; each step leaves the apps in a resting state (no menu open, no key held)."""
        notes_line: list[str] = []
        steps: list[Callable[[], object]] = []
        if index > 0:
            steps.append(self.clear_form)
        steps += [
            self.fill_fields,
            lambda: notes_line.append(self.write_notes()),
            lambda: self.select_in_notes(notes_line[0]),
            self.scroll_list,
            self.move_item,
            self.open_and_close_menu,
            self.save,
        ]
        if xterm:
            steps.append(self.use_terminal)
        return steps


def run_scripted_session(
    display: str,
    *,
    seed: int,
    seconds: float | None = None,
    app_state_file: Path,
    xterm: bool = True,
    stop: threading.Event | None = None,
    gap_scale: float = 1.0,
) -> list[Action]:
    """Drive the running demo apps on ``display``: one cycle, or cycles until ``seconds`` have passed
    or ``stop`` is set (fault injection and soak runs, which end when their own work is done).
    ``gap_scale`` below 1 shortens the pauses between actions (see XDriver).

    Returns the injected actions (the ground truth). Stops only between steps, so the apps are never
    left with a menu open or a field half typed.
    """
    deadline = None if seconds is None else time.monotonic() + seconds

    def should_stop() -> bool:
        timed_out = deadline is not None and time.monotonic() >= deadline
        return timed_out or (stop is not None and stop.is_set())

    with XDriver(display, seed=seed, gap_scale=gap_scale) as driver:
        # Its own stream, so the choices of what to do do not mirror the driver's timing jitter.
        session = _Session(driver, random.Random(f"demotrace-session-{seed}"), app_state_file, display)
        index = 0
        while True:
            for step in session.cycle(index, xterm):
                if driver.injected and should_stop():
                    return driver.injected
                step()
            index += 1
            if deadline is None and stop is None:
                return driver.injected
