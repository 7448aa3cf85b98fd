"""Values echoed in a real xterm on Xvfb are covered over their whole extent, and the person's own login,
full name and host name are covered on screen and replaced in what they type.

The xterm's character grid is known (its geometry in cells and pixels), so each test checks pixels, not
another OCR reading: every ink pixel of every character of a value lies under a box.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from demotrace.capture.scrub import FrameScrubber
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.spool import Spool
from demotrace.geometry import Box
from demotrace.model import Key, Marker
from demotrace.policy import DEFAULT_LOCAL_POLICY, CaptureGate
from demotrace.redact.detectors import screen_detectors
from demotrace.redact.detectors.own_identity import Identity, this_identity
from demotrace.redact.text import redact_text
from tests.recorder_thread import recording
from tests.test_screen_redaction import settled_grab, xdotool

pytestmark = pytest.mark.x11

EMAIL = "jane.doe@example.com"
CARD = "4242 4242 4242 4242"
COLUMNS, ROWS = 64, 8
FULL_NAME = "Ines Okonkwo-Brandt"  # a made-up full name for the title bar (the test account's is "root")


@dataclass(frozen=True)
class Terminal:
    window: str
    grid: Box  # where the character cells are, in screen pixels
    cell_width: float
    cell_height: float

    def cells(self, row: int, column: int, count: int) -> Box:
        left = self.grid.left + round(column * self.cell_width)
        top = self.grid.top + round(row * self.cell_height)
        return Box(
            left,
            top,
            self.grid.left + round((column + count) * self.cell_width),
            top + round(self.cell_height),
        )


def _geometry(desktop: VirtualDesktop, window: str) -> Box:
    """The window's box on the screen (xwininfo's absolute position: xdotool's counts the frame twice)."""
    info = subprocess.run(
        ["xwininfo", "-id", window], env=desktop.env(), check=True, capture_output=True, text=True
    ).stdout
    values = dict(line.strip().split(": ", 1) for line in info.splitlines() if ": " in line)
    x, y = int(values["Absolute upper-left X"]), int(values["Absolute upper-left Y"])
    return Box(x, y, x + int(values["Width"]), y + int(values["Height"]))


@pytest.fixture(params=["6x13", "Monospace-14"])
def terminal(request: pytest.FixtureRequest, desktop: VirtualDesktop, tmp_path: Path) -> Iterator[Terminal]:
    """An xterm with the X bitmap font of the demo's terminal, or a scalable monospace one; a bash whose
    prompt shows the login and host (``root@vm:~$``) and whose history goes nowhere."""
    font = ["-fn", "6x13"] if request.param == "6x13" else ["-fa", "Monospace", "-fs", "14"]
    title = f"demotrace-xterm-{request.param}"
    process = desktop.spawn(
        ["xterm", *font, "-b", "2", "-title", title, "-geometry", f"{COLUMNS}x{ROWS}+60+60",
         "-e", "bash", "--norc", "--noprofile"],
        env={"PS1": r"\u@\h:~$ ", "HISTFILE": str(tmp_path / "history")},
    )  # fmt: skip
    try:
        window = xdotool(desktop, "search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[0]
        outer = _geometry(desktop, window)
        grid = Box(outer.left + 2, outer.top + 2, outer.right - 2, outer.bottom - 2)
        yield Terminal(window, grid, grid.width / COLUMNS, grid.height / ROWS)
    finally:
        process.terminate()
        process.wait(timeout=5)


def prompt_user_host() -> str:
    """What bash shows for ``\\u@\\h``."""
    return f"{getpass.getuser()}@{socket.gethostname().split('.')[0]}"


def run_in(
    desktop: VirtualDesktop,
    terminal: Terminal,
    command: str,
    tmp_path: Path,
    pending: str = "",
    *,
    clear: bool = True,
) -> None:
    """Clear the terminal, run ``command`` (its output starts on row 0), then type ``pending`` at the new
    prompt without running it."""
    done = tmp_path / "done"
    done.unlink(missing_ok=True)
    os.mkfifo(done)
    xdotool(desktop, "windowactivate", "--sync", terminal.window)
    first = "clear; " if clear else ""
    xdotool(desktop, "type", "--delay", "10", f"{first}{command}; echo ok > {done}\n")
    with done.open() as fifo:
        assert fifo.read().strip() == "ok"
    if pending:
        xdotool(desktop, "type", "--delay", "10", pending)


def uncovered_ink(frame: Image.Image, boxes: list[Box], where: Box) -> int:
    """How many dark (ink) pixels of ``where`` lie under no box."""
    grey = frame.convert("L").load()
    assert grey is not None
    return sum(
        1
        for y in range(where.top, where.bottom)
        for x in range(where.left, where.right)
        if isinstance(level := grey[x, y], int)
        and level < 128
        and not any(box.left <= x < box.right and box.top <= y < box.bottom for box in boxes)
    )


def ink(frame: Image.Image, where: Box) -> int:
    return uncovered_ink(frame, [], where)


def test_the_whole_email_and_every_card_group_echoed_in_a_real_xterm_are_covered(
    desktop: VirtualDesktop, terminal: Terminal, tmp_path: Path
) -> None:
    # "clear" wipes the command line: the email is row 0, the card row 1, the next prompt row 2.
    run_in(desktop, terminal, f"echo {EMAIL}; echo {CARD}", tmp_path, pending=f"echo {EMAIL}")
    frame = settled_grab(desktop)
    typed_at = len(f"{prompt_user_host()}:~$ echo ")
    values = {
        "the email printed": terminal.cells(0, 0, len(EMAIL)),
        "the card printed": terminal.cells(1, 0, len(CARD)),
        "the email typed at the prompt": terminal.cells(2, typed_at, len(EMAIL)),
    }
    for group in range(4):
        values[f"card group {group + 1} printed"] = terminal.cells(1, group * 5, 4)
    for name, cells in values.items():
        assert ink(frame, cells) > 20, f"{name}: nothing drawn at {cells}, the grid is wrong"

    boxes = FrameScrubber().scrub_result(frame).boxes

    for name, cells in values.items():
        assert uncovered_ink(frame, boxes, cells) == 0, f"{name} is not covered whole at {cells}: {boxes}"
    echo = terminal.cells(2, typed_at - 5, 4)  # the command word stays readable
    assert uncovered_ink(frame, boxes, echo) > 0


def test_the_login_host_and_full_name_are_covered_in_a_prompt_and_a_title(
    desktop: VirtualDesktop, terminal: Terminal, tmp_path: Path
) -> None:
    login, host = prompt_user_host().split("@")
    identity = Identity((login,), (FULL_NAME,), (host,))
    # The login and host typed at the prompt, the cursor right after them: OCR reads "root@vm█" as
    # "rootGvm|" (no boundary left), and they must be covered all the same.
    typed = f"ssh {login}@{host}"
    title = f"printf '\\033]0;Notes of {FULL_NAME}\\007'; echo done"
    run_in(desktop, terminal, title, tmp_path, pending=typed)
    frame = settled_grab(desktop)
    prompt_row = 1  # "done" on row 0, then the new prompt
    user_cells = terminal.cells(prompt_row, 0, len(login))
    host_cells = terminal.cells(prompt_row, len(login) + 1, len(host))
    typed_at = len(f"{login}@{host}:~$ ssh ")
    typed_cells = terminal.cells(prompt_row, typed_at, len(login) + 1 + len(host))
    title_bar = Box(terminal.grid.left, terminal.grid.top - 30, terminal.grid.right, terminal.grid.top - 2)
    assert ink(frame, user_cells) > 10 and ink(frame, host_cells) > 5

    scrubber = FrameScrubber(detectors=screen_detectors(identity=identity))
    result = scrubber.scrub_result(frame)

    assert uncovered_ink(frame, result.boxes, user_cells) == 0, f"the login {login!r} is readable"
    assert uncovered_ink(frame, result.boxes, host_cells) == 0, f"the host {host!r} is readable"
    assert uncovered_ink(frame, result.boxes, typed_cells) == 0, f"{typed!r} at the prompt is readable"
    assert any(box.intersects(title_bar) for box in result.boxes), "the full name in the title is not covered"
    # Not the whole title: "Notes of" stays.
    title_boxes = [box for box in result.boxes if box.intersects(title_bar)]
    assert sum(box.width for box in title_boxes) < title_bar.width / 2


@pytest.mark.parametrize("cursor", ["under the prompt", "beside the prompt"])
def test_a_prompt_touching_the_block_cursor_keeps_the_login_and_host_covered(
    desktop: VirtualDesktop, terminal: Terminal, tmp_path: Path, cursor: str
) -> None:
    # In the 6x13 font a descender fills the bottom row of its cell and the block cursor the whole of
    # the next cell, so the two touch: under a prompt running "sleep" (its "p"), or beside a prompt
    # whose row above shows "gypsy jumping" (its "g"). Found as one line, the prompt was misread.
    login, host = prompt_user_host().split("@")
    scrubber = FrameScrubber(detectors=screen_detectors(identity=Identity((login,), (), (host,))))
    run_in(desktop, terminal, "echo gypsy jumping", tmp_path)
    prompt_row = 1
    if cursor == "under the prompt":
        xdotool(desktop, "type", "--delay", "10", "sleep 30\n")
    frame = settled_grab(desktop)
    prompt = terminal.cells(prompt_row, 0, len(f"{login}@{host}"))
    cursor_at = (
        (prompt_row + 1, 0) if cursor == "under the prompt" else (prompt_row, len(f"{login}@{host}:~$ "))
    )
    assert ink(frame, terminal.cells(*cursor_at, 1)) > 40, "the block cursor is not where the test put it"
    assert ink(frame, prompt) > 20

    boxes = scrubber.scrub_result(frame).boxes

    assert uncovered_ink(frame, boxes, prompt) == 0, f"{login}@{host} is readable in the prompt: {boxes}"
    assert uncovered_ink(frame, boxes, terminal.cells(0, 0, len("gypsy"))) > 0, "the line above was covered"


def test_the_login_and_host_typed_in_a_real_xterm_become_placeholders(
    desktop: VirtualDesktop, terminal: Terminal, tmp_path: Path
) -> None:
    login, host = prompt_user_host().split("@")
    assert login in this_identity().logins and host in this_identity().hosts
    spool = Spool(tmp_path / "spool", os.urandom(32))
    xdotool(desktop, "windowactivate", "--sync", terminal.window)
    with recording(spool, desktop.display, CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)):
        xdotool(desktop, "type", "--delay", "30", f"echo ssh {login}@{host} now")
        time.sleep(0.5)
        xdotool(desktop, "key", "ctrl+u")  # a non-typing key ends the burst; the line is not run
        time.sleep(1.0)
    events = [event for batch in spool.batches() for event in batch.events]
    typed = "".join(key.char or "" for key in events if isinstance(key, Key) and key.down)
    markers = [event.text for event in events if isinstance(event, Marker) and event.kind == "redacted"]
    assert login not in typed and host not in typed.replace("echo", "")
    assert typed.startswith("echo ssh @") and typed.endswith(" now")
    assert markers == ["<USER>", "<HOST>"]
    assert redact_text(
        f"Notes of {FULL_NAME}", screen_detectors(identity=Identity((), (FULL_NAME,), ()))
    ).text == ("Notes of <USER>")


SCROLLED_CARDS = ("4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881", "6011 1111 1111 1117")


@pytest.mark.x11
def test_a_terminal_scrolling_its_output_keeps_every_card_covered(
    desktop: VirtualDesktop, terminal: Terminal, tmp_path: Path
) -> None:
    def lines(first: int, count: int) -> str:
        return "".join(
            f"row {n:02d} {SCROLLED_CARDS[n % len(SCROLLED_CARDS)]}\n" for n in range(first, first + count)
        )

    (tmp_path / "first.txt").write_text(lines(0, 12))
    (tmp_path / "more.txt").write_text(lines(12, 3))
    scrubber = FrameScrubber(screen_detectors(identity=Identity()))  # the rows hold no login
    # Twelve lines into an eight-row terminal: it scrolls; then three more scroll it again.
    run_in(desktop, terminal, f"cat {tmp_path / 'first.txt'}", tmp_path)
    frames = [settled_grab(desktop)]
    run_in(desktop, terminal, f"cat {tmp_path / 'more.txt'}", tmp_path, clear=False)
    frames.append(settled_grab(desktop))

    # On the second frame the typed command takes two rows and the new prompt one: four card rows.
    for frame, expected_rows in zip(frames, (7, 4), strict=True):
        boxes = scrubber.scrub_result(frame).boxes
        card_rows = 0
        for row in range(ROWS):
            label = terminal.cells(row, 0, 3)
            after_label = terminal.cells(row, 3, 1)
            card = terminal.cells(row, len("row 00 "), len(SCROLLED_CARDS[0]))
            if ink(frame, label) == 0 or ink(frame, after_label) > 0:
                continue  # an empty row, or a prompt ("root@…" has no space after three letters)
            card_rows += 1
            assert uncovered_ink(frame, boxes, card) == 0, f"the card on row {row} is readable"
            assert uncovered_ink(frame, boxes, label) > 0, f"the label on row {row} was covered"
        assert card_rows == expected_rows
