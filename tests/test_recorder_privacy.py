"""The recorder's privacy gate on a real Xvfb + openbox: allow/deny lists, blacked-out frames, typed-text
redaction, password windows and pause — checked in the decrypted spool and in the built dataset."""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from demotrace.capture.blackout import black_boxes
from demotrace.capture.platform import WindowInfo
from demotrace.dataset.build import build_dataset
from demotrace.dataset.load import load_actions
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.script import TERMINAL_CLASS, DemoApps, find_window, read_app_state, start_demo_apps
from demotrace.demo.tkapp import CLASS_NAME as FORM_CLASS
from demotrace.device.spool import Spool
from demotrace.frames.resolver import resolving_loader
from demotrace.geometry import Box
from demotrace.model import (
    Button,
    Event,
    FrameTaken,
    Key,
    Marker,
    Monitor,
    MovePath,
    Scroll,
    Window,
    encode_record,
)
from demotrace.policy import DEFAULT_LOCAL_POLICY, CaptureGate, CapturePolicy, Decision
from demotrace.redact.paint import blackout_image
from tests.recorder_thread import recording

pytestmark = pytest.mark.x11

BATCH_SECONDS = 0.3
CARD = "4111 1111 1111 1111"
PASSWORD = "hunter2-Secret!"
EventT = TypeVar("EventT")


# -- helpers -------------------------------------------------------------------------------------


def xdotool(desktop: VirtualDesktop, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env=desktop.env(), check=True, capture_output=True, text=True)
    return done.stdout.strip()


def click(desktop: VirtualDesktop, x: int, y: int) -> None:
    xdotool(desktop, "mousemove", str(x), str(y), "click", "1")
    time.sleep(0.3)  # the window manager moves focus


def type_text(desktop: VirtualDesktop, text: str) -> None:
    xdotool(desktop, "type", "--delay", "30", text)


def settle() -> None:
    time.sleep(BATCH_SECONDS + 0.7)


def centre(box: dict[str, int]) -> tuple[int, int]:
    return box["x"] + box["width"] // 2, box["y"] + box["height"] // 2


class ShiftedClock:
    """Wall time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def events_of(spool: Spool) -> list[Event]:
    return [event for batch in spool.batches() for event in batch.events]


def of_type(events: list[Event], kind: type[EventT]) -> list[EventT]:
    return [event for event in events if isinstance(event, kind)]


def typed(events: list[Event]) -> str:
    return "".join(key.char or "" for key in of_type(events, Key) if key.down)


def spool_plaintext(spool: Spool) -> bytes:
    """Every batch as decrypted MessagePack: all the spool holds but pixels, whatever the event types.
    (Frames are pixels: what they show is the screen safeguards' business, and random image bytes would
    match short strings by chance.)"""
    return b"".join(encode_record(batch) for batch in spool.batches())


def frame_image(spool: Spool, frame: FrameTaken) -> Image.Image:
    stored = resolving_loader(spool.load_frame)(frame.frame_id)  # delta frames come back whole
    assert stored is not None
    image = Image.open(io.BytesIO(stored.data)).convert("RGB")
    return image


def is_black(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    bands = image.crop(box).getextrema()  # (low, high) per band of an RGB image
    assert isinstance(bands[0], tuple)
    return all(band[1] <= 8 for band in bands if isinstance(band, tuple))  # lossy codecs lift black a bit


@pytest.fixture(scope="module")
def apps(desktop: VirtualDesktop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Tk form and the demo xterm, side by side, for the whole module; yields the form's state file."""
    state_file = tmp_path_factory.mktemp("privacy-apps") / "state.json"
    running: DemoApps = start_demo_apps(desktop, state_file)
    try:
        yield state_file
    finally:
        running.stop()


def layout(state_file: Path) -> dict[str, Any]:
    found: dict[str, Any] = read_app_state(state_file)["layout"]
    return found


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def make_spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", os.urandom(32))


# -- blackout geometry (no X) -----------------------------------------------------------------------


def window(x: int, y: int, width: int, height: int, app: str = "") -> WindowInfo:
    return WindowInfo(app=app, title="", pid=None, x=x, y=y, width=width, height=height, window_id=0)


ALLOWED = Decision("all")
DENIED = Decision("nothing", "denied app")


def test_blackout_respects_the_stacking_order() -> None:
    monitor = Monitor(0, 0, 100, 100)
    image = Image.new("RGB", (100, 100), (255, 255, 255))
    # A denied window at the bottom, partly under an allowed one; a denied one on top of the allowed one.
    stacked = [
        (window(0, 0, 60, 60), DENIED),
        (window(40, 40, 60, 60), ALLOWED),
        (window(80, 80, 40, 40), DENIED),  # runs off the screen: clipped
    ]
    out = blackout_image(image, black_boxes(monitor, stacked))
    assert image.getpixel((10, 10)) == (255, 255, 255)  # the input is left alone
    assert out.getpixel((10, 10)) == (0, 0, 0)  # denied, nothing above
    assert out.getpixel((50, 50)) == (255, 255, 255)  # the allowed window above the denied one shows
    assert out.getpixel((70, 70)) == (255, 255, 255)
    assert out.getpixel((90, 90)) == (0, 0, 0)  # the denied window above the allowed one hides it
    assert out.getpixel((99, 5)) == (255, 255, 255)  # the bare desktop stays
    assert out.size == (100, 100)


def test_black_boxes_are_relative_to_the_monitor() -> None:
    second = Monitor(1920, 0, 1280, 1024)
    boxes = black_boxes(second, [(window(1900, 10, 100, 50), DENIED), (window(0, 0, 50, 50), DENIED)])
    assert boxes == [Box(0, 10, 80, 60)]  # the part on this monitor; the other window is not on it


# -- the recorder on the real desktop ----------------------------------------------------------------


def test_an_allowlist_keeps_the_xterm_out_of_everything(
    desktop: VirtualDesktop, apps: Path, tmp_path: Path
) -> None:
    boxes = layout(apps)
    terminal = find_window(desktop.display, TERMINAL_CLASS)
    assert terminal is not None
    gate = CaptureGate(CapturePolicy(mode="allowlist", allow_apps=[FORM_CLASS]), notice_accepted=True)
    spool = make_spool(tmp_path)
    click(desktop, *centre(boxes["status"]))  # start in the form
    with recording(spool, desktop.display, gate):
        click(desktop, *centre(boxes["name"]))
        type_text(desktop, "formtext")
        click(desktop, terminal.x + 200, terminal.y + 150)
        type_text(desktop, "xtermsecret")
        xdotool(desktop, "key", "Return")
        xdotool(desktop, "click", "4")
        click(desktop, terminal.x + 250, terminal.y + 200)
        time.sleep(0.5)
        click(desktop, *centre(boxes["email"]))  # back to the form
        type_text(desktop, "back")
        settle()

    events = events_of(spool)
    # The form got its text (so input arrived); everything typed in the xterm is absent.
    assert read_app_state(apps)["fields"]["name"].endswith("formtext")
    assert typed(events) == "formtextback"
    assert b"xtermsecret" not in spool_plaintext(spool)
    windows = of_type(events, Window)
    assert windows and all(w.app == FORM_CLASS for w in windows), windows
    assert all("demo terminal" not in w.title for w in windows)
    assert not of_type(events, Scroll)

    def in_terminal(x: int, y: int) -> bool:
        return (
            terminal.x <= x < terminal.x + terminal.width and terminal.y <= y < terminal.y + terminal.height
        )

    assert not [b for b in of_type(events, Button) if in_terminal(b.x, b.y)]
    assert not [p for p in of_type(events, MovePath) if any(in_terminal(x, y) for x, y, _ in p.points[1:-1])]
    [span] = [m for m in of_type(events, Marker) if m.kind == "not_captured"]
    assert span.text == "not allowlisted" and span.duration > 0
    # No frame was taken while the xterm had focus.
    frames = of_type(events, FrameTaken)
    assert frames and not [f for f in frames if span.t < f.t < span.t + span.duration]
    # The email click that brought the person back is kept (held during the span).
    email = boxes["email"]
    assert [b for b in of_type(events, Button) if b.down and email["x"] <= b.x < email["x"] + email["width"]]

    # Frames taken in the form show the form but not the xterm.
    inside_terminal = (terminal.x + 10, terminal.y + 10, terminal.x + terminal.width - 10, terminal.y + 200)
    form_box = boxes["window"]
    inside_form = (form_box["x"] + 10, form_box["y"] + 10, form_box["x"] + 400, form_box["y"] + 300)
    for frame in frames:
        image = frame_image(spool, frame)
        assert is_black(image, inside_terminal), frame.trigger
        assert not is_black(image, inside_form), frame.trigger


def test_a_denied_title_is_never_captured_even_with_the_local_default(
    desktop: VirtualDesktop, apps: Path, tmp_path: Path
) -> None:
    boxes = layout(apps)
    private = desktop.spawn(
        ["xterm", "-title", "Mozilla Firefox Private Browsing", "-geometry", "60x10+1000+560"]
    )
    try:
        xdotool(desktop, "search", "--sync", "--onlyvisible", "--name", "Private Browsing")
        time.sleep(0.3)
        spool = make_spool(tmp_path)
        click(desktop, *centre(boxes["status"]))
        with recording(spool, desktop.display, CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)):
            click(desktop, *centre(boxes["notes"]))  # a frame of the form, with the private xterm beside it
            type_text(desktop, "visible")
            click(desktop, 1100, 600)
            type_text(desktop, "hiddenwords")
            click(desktop, *centre(boxes["status"]))
            settle()
        events = events_of(spool)
        plain = spool_plaintext(spool)
        assert b"Private Browsing" not in plain and b"hiddenwords" not in plain
        assert typed(events) == "visible"
        [span] = [m for m in of_type(events, Marker) if m.kind == "not_captured"]
        assert span.text == "denied title"
        # The demo xterm is allowed by the local default, the private one is black in every frame.
        for frame in of_type(events, FrameTaken):
            image = frame_image(spool, frame)
            assert is_black(image, (1010, 575, 1300, 650))
    finally:
        private.terminate()
        private.wait(timeout=5)


def test_a_card_number_typed_in_the_form_never_reaches_the_spool(
    desktop: VirtualDesktop, apps: Path, tmp_path: Path
) -> None:
    boxes = layout(apps)
    spool = make_spool(tmp_path)
    click(desktop, *centre(boxes["status"]))
    with recording(spool, desktop.display, CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)):
        click(desktop, *centre(boxes["clear"]))
        click(desktop, *centre(boxes["notes"]))
        type_text(desktop, f"card {CARD} ok")
        click(desktop, *centre(boxes["status"]))  # a non-typing action ends the burst
        settle()
    assert read_app_state(apps)["fields"]["notes"] == f"card {CARD} ok"  # the app got every key
    events = events_of(spool)
    assert typed(events) == "card  ok"
    assert not any(ch.isdigit() for ch in typed(events))
    plain = spool_plaintext(spool)
    assert CARD.encode() not in plain and CARD.replace(" ", "").encode() not in plain
    assert [m.text for m in of_type(events, Marker) if m.kind == "redacted"] == ["<CREDIT_CARD>"]
    out = tmp_path / "dataset"
    build_dataset(spool.batches(), spool.load_frame, out, formats=["agentnet"])
    texts = [a.text for a in load_actions(out / "trajectories.jsonl") if a.kind == "type"]
    assert "card <CREDIT_CARD> ok" in texts


def test_a_password_typed_in_the_sign_in_window_leaves_no_keys(
    desktop: VirtualDesktop, apps: Path, tmp_path: Path
) -> None:
    boxes = layout(apps)
    spool = make_spool(tmp_path)
    click(desktop, *centre(boxes["status"]))
    with recording(spool, desktop.display, CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)):
        click(desktop, *centre(boxes["name"]))
        type_text(desktop, "before")
        click(desktop, *centre(boxes["sign_in"]))
        wait_for(lambda: "sign_in_password" in layout(apps), "the sign-in window")
        click(desktop, *centre(layout(apps)["sign_in_password"]))
        type_text(desktop, PASSWORD)
        click(desktop, *centre(layout(apps)["sign_in_submit"]))
        wait_for(lambda: not read_app_state(apps)["sign_in"]["open"], "the sign-in window to close")
        click(desktop, *centre(boxes["name"]))
        type_text(desktop, "after")
        settle()
    assert read_app_state(apps)["sign_in"]["password"] == PASSWORD  # the field got it
    events = events_of(spool)
    sign_in_windows = [w for w in of_type(events, Window) if w.title.startswith("Sign in")]
    assert sign_in_windows  # the window itself is captured (its title is no secret)
    assert typed(events) == "beforeafter"
    assert b"hunter" not in spool_plaintext(spool)
    opened, closed = sign_in_windows[0].t, max(w.t for w in of_type(events, Window) if w.app == FORM_CLASS)
    assert not [k for k in of_type(events, Key) if opened <= k.t < closed]  # not even how many keys
    assert [m.text for m in of_type(events, Marker) if m.kind == "redacted"] == ["<PASSWORD>"]
    out = tmp_path / "dataset"
    build_dataset(spool.batches(), spool.load_frame, out, formats=["agentnet"])
    texts = [a.text for a in load_actions(out / "trajectories.jsonl") if a.kind == "type"]
    assert "<PASSWORD>" in texts and not any(PASSWORD in (text or "") for text in texts)


def test_pause_stops_capture_at_once_and_resumes_on_time(
    desktop: VirtualDesktop, apps: Path, tmp_path: Path
) -> None:
    boxes = layout(apps)
    clock = ShiftedClock()
    gate = CaptureGate(DEFAULT_LOCAL_POLICY, clock=clock, notice_accepted=True)
    spool = make_spool(tmp_path)
    click(desktop, *centre(boxes["status"]))
    click(desktop, *centre(boxes["notes"]))
    with recording(spool, desktop.display, gate):
        type_text(desktop, "one")
        time.sleep(0.3)  # the keys reach the recorder (X RECORD) before the person pauses
        # A short pause: the next keys are dropped, and it ends by itself without any input.
        gate.update_state(paused_until=clock() + 1.5)
        type_text(desktop, "pausedwords")
        time.sleep(2.0)
        settle()
        markers_while_running = [m for m in of_type(events_of(spool), Marker) if m.kind == "not_captured"]
        type_text(desktop, "two")
        time.sleep(0.3)
        # A long pause, then the clock jumps past its end: the next key is captured again.
        gate.update_state(paused_until=clock() + 900)
        type_text(desktop, "skipped")
        time.sleep(0.3)
        clock.offset += 900
        xdotool(desktop, "key", "space")
        type_text(desktop, "three")
        settle()
    events = events_of(spool)
    assert typed(events) == "onetwo three"
    assert b"pausedwords" not in spool_plaintext(spool) and b"skipped" not in spool_plaintext(spool)
    # The first pause's marker was written when it ended, while still recording: no input needed.
    assert [m.text for m in markers_while_running] == ["paused"]
    spans = [m for m in of_type(events, Marker) if m.kind == "not_captured"]
    assert [m.text for m in spans] == ["paused", "paused"]
    keys = [k for k in of_type(events, Key) if k.down]
    first_t = next(k.t for k in keys if k.char == "t")
    assert spans[0].t + spans[0].duration <= first_t
    assert spans[0].duration > 1.0
    # Only the markers: no input, frame or window event inside either span.
    for span in spans:
        # The window is written again at the span's very end (capture resumed): allow for float
        # rounding of that shared instant, nothing more.
        end = span.t + span.duration - 1e-6
        inside = [e for e in events if span.t < e.t < end and e is not span]
        assert not inside, inside


def test_task_markers_are_written_in_order(desktop: VirtualDesktop, apps: Path, tmp_path: Path) -> None:
    boxes = layout(apps)
    gate = CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)
    spool = make_spool(tmp_path)
    click(desktop, *centre(boxes["status"]))
    with recording(spool, desktop.display, gate) as recorder:
        recorder.mark("task_start", "Fill in the form for jane@example.com")
        click(desktop, *centre(boxes["name"]))
        type_text(desktop, "task")
        gate.update_state(exempt=True)
        recorder.mark("task_end")  # while exempt: not recorded
        gate.update_state(exempt=False)
        recorder.mark("task_end")
        settle()
    markers = [(m.kind, m.text) for m in of_type(events_of(spool), Marker)]
    assert markers == [
        ("task_start", "Fill in the form for <EMAIL>"),
        ("not_captured", "exempt"),
        ("task_end", ""),
        ("stop", ""),
    ]
