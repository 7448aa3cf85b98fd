"""Browser reports without a browser: which page a window shows, what the processor waits for, the
native messaging host's framing, the bridge's socket rules, and the host manifests."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demotrace.capture.browser_bridge import BrowserBridge, parent_pid
from demotrace.capture.browser_pages import (
    BrowserPages,
    ElementBox,
    ElementReport,
    PageWindow,
    ReportError,
    WindowsReport,
    decode_report,
    encode_report,
    match_pages,
)
from demotrace.capture.messages import Clock
from demotrace.capture.page_events import REPORT_WAIT_SECONDS, PageEvents
from demotrace.capture.platform import WindowInfo
from demotrace.device.browser_host import HostError, read_message, write_message
from demotrace.device.browser_install import BROWSERS, CHROMIUM_EXTENSION_ID, install_hosts, write_launcher
from demotrace.geometry import Box
from demotrace.policy import DEFAULT_LOCAL_POLICY, CapturePolicy

PID = 4242
ALLOW = CapturePolicy(mode="allowlist", allow_url_patterns=[r"^https://work\.example/"])


def x_window(
    window_id: int, x: int, y: int, width: int = 800, height: int = 600, pid: int = PID
) -> WindowInfo:
    return WindowInfo(
        app="Chromium", title="Work - Chromium", pid=pid, x=x, y=y, width=width, height=height,
        window_id=window_id, instance="chromium", process="chromium",
    )  # fmt: skip


def page(
    window_id: int, x: int, y: int, url: str, *, focused: bool = False, incognito: bool = False
) -> PageWindow:
    return PageWindow(
        id=window_id, focused=focused, incognito=incognito, left=x, top=y, width=800, height=600, url=url
    )


def pages_with(*windows: PageWindow) -> BrowserPages:
    pages = BrowserPages()
    pages.report(PID, WindowsReport(list(windows)))
    return pages


def test_a_window_shows_the_page_whose_bounds_it_has() -> None:
    pages = pages_with(
        page(1, 0, 0, "https://work.example/a", focused=True), page(2, 50, 50, "https://mail.example/")
    )
    work, mail = x_window(10, 0, 0), x_window(11, 50, 50)
    assert pages.context(work, ALLOW, focused=True) is not None
    assert pages.context(work, ALLOW, focused=True).url == "https://work.example/a"  # type: ignore[union-attr]
    # The mail window is not the browser's focused window: as the focused X window it is unknown.
    assert pages.context(mail, ALLOW, focused=True).url is None  # type: ignore[union-attr]
    assert pages.context(mail, ALLOW, focused=False, stack=[work, mail]).url == "https://mail.example/"  # type: ignore[union-attr]
    # Another process (another browser, or no extension) gets no page.
    stranger = pages.context(x_window(12, 0, 0, pid=999), ALLOW, focused=True)
    assert stranger is not None and stranger.url is None and not stranger.extension


def test_windows_with_the_same_bounds_are_told_apart_only_by_focus() -> None:
    # Two maximised windows, and a private one the extension cannot see, all at the same place.
    work = page(1, 0, 0, "https://work.example/", focused=True)
    other = page(2, 0, 0, "https://mail.example/")
    under, top = x_window(10, 0, 0), x_window(11, 0, 0)
    assert match_pages([under, top], [work, other]) == {11: work}  # the top one is the focused one
    assert (
        match_pages([under, top], [page(1, 0, 0, "https://work.example/"), other]) == {}
    )  # no focus: unknown
    # One reported window, two X windows at its place (the second is private and unseen): only the top.
    assert match_pages([under, top], [work]) == {11: work}
    assert match_pages([under, top], [page(1, 0, 0, "https://work.example/")]) == {}


def test_private_pages_and_unknown_pages_are_reported_as_such() -> None:
    pages = pages_with(page(1, 0, 0, "https://work.example/", focused=True, incognito=True))
    context = pages.context(x_window(10, 0, 0), DEFAULT_LOCAL_POLICY, focused=True)
    assert context is not None and context.private and context.extension


def test_a_focused_password_field_is_known_and_its_box_is_covered() -> None:
    pages = pages_with(page(1, 100, 50, "https://work.example/", focused=True))
    window = x_window(10, 100, 50)
    field = ElementReport(
        event="focus", window=1, role="textbox", name="Password", input_type="password", sensitive="password",
        box=ElementBox(120.0, 200.0, 300.0, 30.0),
    )  # fmt: skip
    pages.report(PID, field)
    assert pages.sensitive_focus(window) == field
    assert pages.sensitive_boxes([window]) == [Box(119, 199, 421, 231)]
    pages.report(PID, ElementReport(event="blur", window=1))
    assert pages.sensitive_focus(window) is None  # typing is no longer into it
    # ...but the field stays covered while its page is shown: the frame before the next click is grabbed
    # after the browser moved focus on mouse-down, with the field still on screen.
    assert pages.sensitive_boxes([window]) == [Box(119, 199, 421, 231)]
    pages.report(PID, WindowsReport([page(2, 100, 50, "https://other.example/", focused=True)]))
    assert pages.sensitive_boxes([window]) == []  # its page is gone


def test_the_processor_waits_for_the_report_that_follows_a_focus_change_or_a_click() -> None:
    clock = Clock(0, 1000.0)
    pages = pages_with(page(1, 0, 0, "https://work.example/", focused=True))
    events = PageEvents(clock, pages)
    window = x_window(10, 0, 0)
    events.focus_changed(x_window(20, 0, 0, pid=999), now=5.0)
    assert not events.waiting  # no extension in that process: nothing will come
    events.focus_changed(window, now=5.0)
    assert events.waiting and events.deadline == 5.0 + REPORT_WAIT_SECONDS
    click = ElementReport(event="click", window=1, x=40.0, y=60.0, role="button", name="Save")
    events.take(PID, click, 1_000_000, window=window, record_elements=True)
    assert events.waiting  # a click report does not end the wait for the page
    events.take(PID, WindowsReport([page(1, 0, 0, "https://work.example/", focused=True)]), 2, window=window,
                record_elements=True)  # fmt: skip
    assert not events.waiting
    events.pressed(window, now=6.0)
    assert not events.overdue(6.0 + REPORT_WAIT_SECONDS / 2)
    news = events.take(PID, click, 3_000_000_000, window=window, record_elements=True)
    assert not events.waiting
    assert (
        news.element is not None
        and news.element.element.role == "button"
        and (news.element.x, news.element.y) == (40, 60)
    )
    assert news.element.t == 3.0
    assert events.take(PID, click, 4, window=window, record_elements=False).element is None
    events.pressed(window, now=7.0)
    assert events.overdue(7.0 + REPORT_WAIT_SECONDS) and not events.waiting


def test_elements_of_a_page_not_in_front_or_private_are_not_written() -> None:
    clock = Clock(0, 1000.0)
    pages = pages_with(
        page(1, 0, 0, "https://work.example/", focused=True), page(2, 60, 60, "https://b.example/")
    )
    events = PageEvents(clock, pages)
    window = x_window(10, 0, 0)
    behind = ElementReport(event="click", window=2, x=1.0, y=1.0, role="link", name="x")
    assert events.take(PID, behind, 1, window=window, record_elements=True).element is None
    private = ElementReport(event="click", window=1, incognito=True, x=1.0, y=1.0, role="link", name="x")
    assert events.take(PID, private, 1, window=window, record_elements=True).element is None


def test_reports_are_checked_field_by_field() -> None:
    report = WindowsReport([page(1, 0, 0, "https://work.example/")])
    assert decode_report(encode_report(report)) == report
    for bad in (
        b'{"type": "windows", "windows": [], "text": "page text"}',  # a field we do not know
        b'{"type": "keys", "value": "hunter2"}',
        b'{"type": "element", "event": "click", "window": 1, "value": "typed"}',
        b"not json",
        b'{"type": "windows", "windows": []}' + b" " * 20000,
    ):
        with pytest.raises(ReportError):
            decode_report(bad)


def test_the_host_speaks_the_native_messaging_framing() -> None:
    stream = io.BytesIO()
    write_message(stream, b'{"a": 1}')
    write_message(stream, b"{}")
    stream.seek(0)
    assert read_message(stream) == b'{"a": 1}'
    assert read_message(stream) == b"{}"
    assert read_message(stream) is None
    with pytest.raises(HostError):
        read_message(io.BytesIO((1 << 20).to_bytes(4, sys.byteorder)))
    with pytest.raises(HostError):
        read_message(io.BytesIO((10).to_bytes(4, sys.byteorder) + b"short"))


def test_the_host_forwards_only_reports_to_the_bridge_which_keys_them_by_the_browser(tmp_path: Path) -> None:
    """The real host process, started the way a browser starts it (its parent is the 'browser')."""
    socket_path = tmp_path / "run" / "browser.sock"
    heard: list[tuple[int, object]] = []
    with BrowserBridge(socket_path) as bridge:
        assert socket_path.stat().st_mode & 0o777 == 0o600
        assert (socket_path.parent.stat().st_mode & 0o777) == 0o700
        bridge.subscribe(lambda pid, report: heard.append((pid, report)))
        launcher = write_launcher(tmp_path / "host", sys.executable, socket_path)
        host = subprocess.Popen(
            [str(launcher), f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"], stdin=subprocess.PIPE
        )
        assert host.stdin is not None
        windows = WindowsReport([page(1, 0, 0, "https://work.example/", focused=True)])
        write_message(host.stdin, b'{"type": "keys", "value": "hunter2"}')  # dropped by the host
        write_message(host.stdin, encode_report(windows))
        deadline = time.monotonic() + 20
        while not heard and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heard == [(os.getpid(), windows)]  # the host's parent: this test plays the browser
        assert bridge.refused == 0
        host.stdin.close()
        assert host.wait(20) == 0
        deadline = time.monotonic() + 5
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heard[-1] == (os.getpid(), None)  # hung up: the browser's pages are forgotten
    assert not socket_path.exists()


def test_the_bridge_hangs_up_on_garbage(tmp_path: Path) -> None:
    with BrowserBridge(tmp_path / "browser.sock") as bridge:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(bridge.path))
        client.sendall(b'{"type": "keys", "value": "x"}\n')
        client.settimeout(5)
        assert client.recv(10) == b""  # closed by the bridge
        client.close()
        assert bridge.refused == 1


def test_parent_pid_reads_proc() -> None:
    assert parent_pid(os.getpid()) == os.getppid()
    assert parent_pid(2**22 + 12345) is None


def test_host_manifests_name_the_launcher_and_our_extension_only(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path / "bin" / "host", "/usr/bin/python3")
    written = install_hosts(list(BROWSERS), launcher, home=tmp_path)
    chromium = json.loads(
        (tmp_path / ".config/chromium/NativeMessagingHosts/com.demotrace.recorder.json").read_text()
    )
    assert chromium["path"] == str(launcher) and chromium["type"] == "stdio"
    assert chromium["allowed_origins"] == [f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"]
    firefox = json.loads(
        (tmp_path / ".mozilla/native-messaging-hosts/com.demotrace.recorder.json").read_text()
    )
    assert firefox["allowed_extensions"] == ["recorder-bridge@demotrace.invalid"]
    assert len(written) == len(BROWSERS)
    assert os.access(launcher, os.X_OK)
    assert "-m demotrace.device.browser_host" in launcher.read_text()


def test_the_extension_manifest_is_mv3_with_the_id_the_hosts_allow() -> None:
    import base64
    import hashlib

    manifest = json.loads(
        (Path(__file__).resolve().parent.parent / "extension" / "manifest.json").read_text()
    )
    assert manifest["manifest_version"] == 3
    assert set(manifest["permissions"]) == {"nativeMessaging", "tabs"}  # no host or storage permissions
    digest = hashlib.sha256(base64.b64decode(manifest["key"])).hexdigest()[:32]
    assert "".join(chr(ord("a") + int(c, 16)) for c in digest) == CHROMIUM_EXTENSION_ID
    assert manifest["browser_specific_settings"]["gecko"]["id"] == "recorder-bridge@demotrace.invalid"


def test_browser_install_registers_the_host_for_the_browsers_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from demotrace.cli.main import app

    profile = tmp_path / "profile"
    result = CliRunner().invoke(
        app,
        [
            "browser",
            "install",
            "--browser",
            "chromium",
            "--browser",
            "firefox",
            "--user-data-dir",
            str(profile),
        ],
        env={"HOME": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    launcher = tmp_path / ".local/share/demotrace/browser-host"
    for manifest in (
        tmp_path / ".config/chromium/NativeMessagingHosts/com.demotrace.recorder.json",
        tmp_path / ".mozilla/native-messaging-hosts/com.demotrace.recorder.json",
        profile / "NativeMessagingHosts/com.demotrace.recorder.json",
    ):
        assert json.loads(manifest.read_text())["path"] == str(launcher)
    bad = CliRunner().invoke(
        app, ["browser", "install", "--browser", "netscape"], env={"HOME": str(tmp_path)}
    )
    assert bad.exit_code == 2 and "unknown browser netscape" in bad.output
