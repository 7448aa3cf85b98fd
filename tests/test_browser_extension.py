"""The browser extension in real Chromium (Debian's, headful on the test's Xvfb + openbox), its native
messaging host and the recorder: only the allowed site is captured, never a page that merely titles
itself like it, nor a private window; a password field leaves no key; a click's element reaches the
dataset. Input is injected through XTEST, as a person's would be."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from demotrace.capture.browser_bridge import BrowserBridge
from demotrace.capture.platform import open_platform
from demotrace.dataset.build import build_dataset
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.browser_install import write_host_manifest, write_launcher
from demotrace.device.spool import Spool
from demotrace.model import Element, FrameTaken, Key, Marker, Window
from demotrace.policy import CaptureGate, CapturePolicy
from demotrace.protocol import NOT_CAPTURED_MARKER_KIND, REDACTED_MARKER_KIND
from tests.recorder_thread import recording
from tests.test_recorder_privacy import events_of, frame_image, is_black, of_type, spool_plaintext, typed

pytestmark = pytest.mark.x11

CHROMIUM = "/usr/bin/chromium"
EXTENSION = Path(__file__).resolve().parent.parent / "extension"
# This machine's Chromium: no sandbox (root), no GPU, nothing from the network but our own pages.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-position=0,0",
    "--window-size=1000,700",
    f"--disable-extensions-except={EXTENSION}",
    f"--load-extension={EXTENSION}",
]
TITLE = "Tickets - Jira"  # both sites use it: a title proves nothing
PAGE = """<!doctype html><html><head><title>{title}</title><style>
body {{ margin: 0; font: 16px sans-serif; background: #fff; }}
input, button {{ display: block; margin: 24px; width: 320px; height: 32px; font-size: 16px; }}
</style></head><body>
<input id="search" aria-label="Search tickets">
<input id="pw" type="password" aria-label="Password">
<button id="save">Save ticket</button>
<script>
addEventListener("mousemove", (e) => {{ window.__origin = [e.screenX - e.clientX, e.screenY - e.clientY]; }});
</script></body></html>"""


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.format(title=TITLE).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Browser:
    page: Any
    desktop: VirtualDesktop

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.desktop.env(), check=True)

    def knows_its_origin(self) -> None:
        """Move the pointer into the page until the page has seen a move (a page just navigated to has not
        yet listened for one: a single move could come before its listener)."""
        deadline = time.monotonic() + 10
        step = 0
        while True:
            self.xdotool("mousemove", str(500 + step % 2), "600")  # a real move each time
            time.sleep(0.2)
            if self.page.evaluate("() => window.__origin !== undefined"):
                return
            if time.monotonic() > deadline:
                raise AssertionError("the page never saw the pointer move")
            step += 1

    def centre_of(self, selector: str) -> tuple[int, int]:
        """Screen point of an element's centre (the page learnt its origin from a real pointer move)."""
        x, y = self.page.evaluate(
            """(selector) => { const r = document.querySelector(selector).getBoundingClientRect();
                const [x, y] = window.__origin;
                return [x + r.left + r.width / 2, y + r.top + r.height / 2]; }""",
            selector,
        )
        return round(x), round(y)

    def box_of(self, selector: str) -> tuple[int, int, int, int]:
        left, top, right, bottom = self.page.evaluate(
            """(selector) => { const r = document.querySelector(selector).getBoundingClientRect();
                return [window.__origin[0] + r.left, window.__origin[1] + r.top,
                        window.__origin[0] + r.right, window.__origin[1] + r.bottom]; }""",
            selector,
        )
        return round(left), round(top), round(right), round(bottom)

    def click(self, selector: str) -> None:
        self.knows_its_origin()
        x, y = self.centre_of(selector)
        self.xdotool("mousemove", str(x), str(y), "click", "1")
        time.sleep(0.4)

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", "60", text)
        time.sleep(0.3)


@dataclass
class Session:
    spool: Spool
    events: list[Any]
    site: str
    password_box: tuple[int, int, int, int]
    bridge_reports: int


def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def page_url_reported(bridge: BrowserBridge, display: str, policy: CapturePolicy, url: str) -> bool:
    platform = open_platform(display)
    try:
        windows = platform.visible_windows()
    finally:
        platform.close()
    return any(context is not None and context.url == url for context in bridge.contexts(windows, policy))


@pytest.fixture(scope="module")
def session(desktop: VirtualDesktop, site: str, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """One recorded browsing session: the allowed site, a private window, the allowed site again, a
    site titled like it."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh (Debian package chromium)")
    root = tmp_path_factory.mktemp("browser")
    profile = root / "profile"
    socket_path = root / "run" / "browser.sock"
    # Chromium started with --user-data-dir looks for native messaging hosts in that folder.
    launcher = write_launcher(root / "browser-host", sys.executable, socket_path)
    write_host_manifest(profile / "NativeMessagingHosts", "chromium", launcher)
    allowed, denied = f"{site}/allowed/", f"{site}/denied/"
    policy = CapturePolicy(mode="allowlist", allow_url_patterns=[rf"^{site}/allowed/"])
    spool = Spool(root / "spool", os.urandom(32))
    with BrowserBridge(socket_path) as bridge, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=False,
            args=CHROMIUM_FLAGS,
            ignore_default_args=["--disable-extensions"],
            viewport=None,
            env={**os.environ, "DISPLAY": desktop.display},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(allowed)
            wait_for(lambda: page_url_reported(bridge, desktop.display, policy, allowed), "the allowed page")
            browser = Browser(page, desktop)
            with recording(spool, desktop.display, CaptureGate(policy, notice_accepted=True), browser=bridge):
                browser.click("#search")
                browser.type("allowedtext")
                browser.click("#pw")
                browser.type("hunter22pw")
                password_box = browser.box_of("#pw")
                browser.click("#save")
                # A private window on the very same allowed site: nothing of it may be captured.
                browser.xdotool("key", "ctrl+shift+n")
                time.sleep(2.0)
                browser.type(allowed.removeprefix("http://"))
                browser.xdotool("key", "Return")
                time.sleep(2.0)
                browser.xdotool("key", "Tab")
                browser.type("privatetext")
                browser.xdotool("key", "ctrl+shift+w")
                time.sleep(1.5)
                browser.click("#search")
                browser.type("backtext")
                # The same title on a site the policy does not allow.
                page.goto(denied)
                wait_for(lambda: page_url_reported(bridge, desktop.display, policy, denied), "the other page")
                browser.click("#search")
                browser.type("deniedtext")
                browser.click("#save")
            reports = bridge.reports
        finally:
            context.close()
    return Session(spool, events_of(spool), site, password_box, reports)


def not_captured_spans(events: list[Any]) -> list[tuple[float, float, str]]:
    return [
        (marker.t, marker.t + marker.duration, marker.text)
        for marker in of_type(events, Marker)
        if marker.kind == NOT_CAPTURED_MARKER_KIND
    ]


def test_keys_are_captured_only_on_the_allowed_site(session: Session) -> None:
    text = typed(session.events)
    assert "allowedtext" in text
    assert "backtext" in text
    plaintext = spool_plaintext(session.spool)
    for secret in ("hunter22pw", "privatetext", "deniedtext"):
        assert secret not in text
        assert secret.encode() not in plaintext


def test_a_page_titled_like_the_allowed_site_and_a_private_window_are_not_captured(session: Session) -> None:
    reasons = [reason for _start, _end, reason in not_captured_spans(session.events)]
    assert "unknown page" in reasons  # the private window: the extension does not see it
    assert "not allowlisted" in reasons  # the page titled like the allowed site
    windows = [window for window in of_type(session.events, Window) if window.app == "Chromium"]
    assert windows, "the allowed page's window is reported"
    for window in windows:
        assert window.url == f"{session.site}/allowed/", window  # no URL of another page, no query
        assert window.title.startswith(TITLE)
    # Every key written was typed while the allowed page was in front: none falls in a span.
    for key in of_type(session.events, Key):
        assert not any(start <= key.t < end for start, end, _ in not_captured_spans(session.events))


def test_frames_are_taken_only_on_the_allowed_site(session: Session) -> None:
    frames = of_type(session.events, FrameTaken)
    assert len(frames) >= 3
    spans = not_captured_spans(session.events)
    for frame in frames:
        assert not any(start <= frame.t < end for start, end, _ in spans), frame


def test_a_password_field_leaves_no_key_and_is_covered_on_the_frame(session: Session) -> None:
    markers = [m for m in of_type(session.events, Marker) if m.kind == REDACTED_MARKER_KIND]
    assert [m.text for m in markers] == ["<PASSWORD>"]
    focus = [e for e in of_type(session.events, Element) if e.element.input_type == "password"]
    assert focus and focus[0].element.name == "Password"
    # The frame before the click on "Save": the password field still has focus, and is black.
    clicks = [
        e for e in of_type(session.events, Element) if e.event == "click" and e.element.role == "button"
    ]
    save = clicks[0]
    frame = max((f for f in of_type(session.events, FrameTaken) if f.t <= save.t), key=lambda f: f.t)
    image = frame_image(session.spool, frame)
    left, top, right, bottom = session.password_box
    inside = (left - frame.left + 3, top - frame.top + 3, right - frame.left - 3, bottom - frame.top - 3)
    assert is_black(image, inside)
    # The search field beside it is not covered (it shows what the person typed there).
    assert not is_black(image, (inside[0], inside[1] - 60, inside[2], inside[3] - 60))


def test_the_element_of_a_click_reaches_the_dataset(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    build_dataset(session.spool.batches(), session.spool.load_frame, out, formats=["agentnet", "parquet"])
    steps = [
        step
        for line in (out / "trajectories.jsonl").read_text().splitlines()
        for step in json.loads(line)["traj"]
    ]
    saves = [
        s
        for s in steps
        if s["value"]["action"] == "click" and (s["action_detail"]["element"] or {}).get("role") == "button"
    ]
    assert len(saves) == 1  # the click on "Save" on the other site is not there
    detail = saves[0]["action_detail"]
    assert detail["element"]["name"] == "Save ticket"
    assert detail["url"] == f"{session.site}/allowed/"
    typing = [
        s for s in steps if s["value"]["action"] == "type" and s["action_detail"]["text"] == "allowedtext"
    ]
    assert typing and typing[0]["action_detail"]["element"]["name"] == "Search tickets"
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "parquet").to_pylist()
    assert any('"Save ticket"' in row["action_detail"] for row in rows)
