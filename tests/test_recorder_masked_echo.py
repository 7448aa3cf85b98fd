"""Password fields found by their masked echo, in a window whose title says nothing about passwords: a
real Tk dialog on Xvfb + openbox, XTEST typing, the decrypted spool and the built dataset."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_recorder_privacy import (
    click,
    events_of,
    make_spool,
    of_type,
    recording,
    settle,
    spool_plaintext,
    typed,
    wait_for,
    xdotool,
)

from demotrace.dataset.build import build_dataset
from demotrace.dataset.load import load_actions
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.spool import Spool
from demotrace.model import Button, Event, Key, Marker
from demotrace.policy import DEFAULT_LOCAL_POLICY, CaptureGate, is_password_window

pytestmark = pytest.mark.x11

TITLE = "Preferences"
PIN = "hunter2-Secret!"
SECRET = "Tr0u&"  # short: the click that follows comes before the verdict on its echo
NOTES = "plain words here"

# Four entries down a "Preferences" dialog: a user name, a PIN shown as *, a secret shown as bullets,
# notes. What each holds is written to the state file after every key, as the test's ground truth.
DIALOG = """
import json, sys, tkinter as tk
state_file = sys.argv[1]
root = tk.Tk(className="Prefs")
root.title("Preferences")
root.geometry("460x330+700+150")
entries = {}
for row, (name, show) in enumerate([("user", ""), ("pin", "*"), ("secret", "\\u2022"), ("notes", "")]):
    tk.Label(root, text=name).grid(row=row, column=0, padx=10, pady=18, sticky="w")
    entry = tk.Entry(root, show=show, width=30)
    entry.grid(row=row, column=1, padx=10, pady=18)
    entries[name] = entry
tk.Label(root, text="Changes are saved as you type").grid(row=4, column=0, columnspan=2, pady=10)

def write(_event=None):
    root.update_idletasks()
    layout = {name: {"x": e.winfo_rootx(), "y": e.winfo_rooty(), "width": e.winfo_width(),
                     "height": e.winfo_height()} for name, e in entries.items()}
    fields = {name: e.get() for name, e in entries.items()}
    with open(state_file + ".tmp", "w") as out:
        json.dump({"fields": fields, "layout": layout}, out)
    import os; os.replace(state_file + ".tmp", state_file)

root.bind_all("<KeyRelease>", write)
root.after(300, write)
root.mainloop()
"""


@pytest.fixture()
def dialog(desktop: VirtualDesktop, tmp_path: Path) -> Iterator[Path]:
    state_file = tmp_path / "prefs.json"
    app = desktop.spawn([sys.executable, "-c", DIALOG, str(state_file)])
    try:
        wait_for(state_file.exists, "the Preferences dialog")
        yield state_file
    finally:
        app.terminate()
        app.wait(timeout=5)


def state(state_file: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(state_file.read_text())
    return found


def centre_of(state_file: Path, name: str) -> tuple[int, int]:
    box = state(state_file)["layout"][name]
    return box["x"] + box["width"] // 2, box["y"] + box["height"] // 2


def keys_between(events: list[Event], start: float, end: float) -> list[Key]:
    return [key for key in of_type(events, Key) if start <= key.t < end]


def password_markers(events: list[Event]) -> list[Marker]:
    return [m for m in of_type(events, Marker) if m.kind == "redacted"]


def type_actions(spool: Spool, out: Path) -> list[str]:
    build_dataset(spool.batches(), spool.load_frame, out, formats=["agentnet"])
    return [a.text or "" for a in load_actions(out / "trajectories.jsonl") if a.kind == "type"]


def test_the_dialog_title_is_no_password_window() -> None:
    from demotrace.policy import WindowContext

    assert not is_password_window(DEFAULT_LOCAL_POLICY, WindowContext(app="Prefs", title=TITLE))


def test_masked_fields_leave_one_marker_and_no_key_while_plain_text_is_kept(
    desktop: VirtualDesktop, dialog: Path, tmp_path: Path
) -> None:
    spool = make_spool(tmp_path)
    with recording(spool, desktop.display, CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)):
        click(desktop, *centre_of(dialog, "pin"))
        xdotool(desktop, "type", "--delay", "40", PIN)
        click(desktop, *centre_of(dialog, "secret"))
        x, y = centre_of(dialog, "notes")
        xdotool(desktop, "type", "--delay", "40", SECRET)
        xdotool(desktop, "mousemove", str(x), str(y), "click", "1")  # no pause: the verdict is not in yet
        time.sleep(0.3)
        xdotool(desktop, "type", "--delay", "40", NOTES)
        click(desktop, *centre_of(dialog, "user"))
        settle()
    fields = state(dialog)["fields"]
    assert (fields["pin"], fields["secret"], fields["notes"]) == (PIN, SECRET, NOTES)  # the app got it all

    events = events_of(spool)
    plain = spool_plaintext(spool)
    assert typed(events) == NOTES  # the plain field's text is recorded, key by key
    assert b"hunter2" not in plain and SECRET.encode() not in plain
    markers = password_markers(events)
    assert [m.text for m in markers] == ["<PASSWORD>", "<PASSWORD>"]
    clicks = [b.t for b in of_type(events, Button) if b.down]
    for marker in markers:
        next_click = min(t for t in clicks if t > marker.t)
        assert keys_between(events, marker.t, next_click) == []  # not even how many keys
    texts = type_actions(spool, tmp_path / "dataset")
    assert texts == ["<PASSWORD>", "<PASSWORD>", NOTES]


def test_a_user_name_then_tab_then_a_masked_field_keeps_only_the_user_name(
    desktop: VirtualDesktop, dialog: Path, tmp_path: Path
) -> None:
    spool = make_spool(tmp_path)
    with recording(spool, desktop.display, CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)):
        click(desktop, *centre_of(dialog, "user"))
        xdotool(desktop, "type", "--delay", "40", "jane.doe")
        xdotool(desktop, "key", "Tab")
        xdotool(desktop, "type", "--delay", "40", PIN)
        xdotool(desktop, "key", "Return")
        settle()
    fields = state(dialog)["fields"]
    assert (fields["user"], fields["pin"]) == ("jane.doe", PIN)

    events = events_of(spool)
    assert typed(events) == "jane.doe"
    assert b"hunter2" not in spool_plaintext(spool)
    [marker] = password_markers(events)
    assert marker.text == "<PASSWORD>"
    tab = next(k for k in of_type(events, Key) if k.key == "tab" and k.down)
    assert tab.t < marker.t
    # After the marker no key at all, not even the Enter that submitted it (as in a password window).
    assert [k.key for k in of_type(events, Key) if k.t >= marker.t and k.down] == []
    texts = type_actions(spool, tmp_path / "dataset")
    assert texts == ["jane.doe", "<PASSWORD>"]
