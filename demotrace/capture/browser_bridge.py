"""The browser bridge: the recorder's end of the browser extension's reports.

The extension's native messaging host (``python -m demotrace.device.browser_host``, started by the
browser) connects to a Unix socket that only this OS user can reach (0700 folder, 0600 socket, the
peer's uid checked with SO_PEERCRED) and writes one JSON report per line (:mod:`browser_pages`). The
browser a connection speaks for is the host's parent process, as the kernel tells it, never as the
report says: a browser's X windows carry the same process id.

Every report updates a live :class:`~demotrace.capture.browser_pages.BrowserPages` (read by the frame
thread under a lock: which windows to black out, which password fields to cover) and is handed to the
subscriber (the recorder, which puts it on its event queue: the processor decides in queue order).
One blocking thread per connection; nothing wakes up while the browser says nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from demotrace.capture.browser_pages import (
    MAX_REPORT_BYTES,
    BrowserPages,
    BrowserReport,
    ReportError,
    decode_report,
)
from demotrace.capture.platform import WindowInfo
from demotrace.geometry import Box
from demotrace.local_socket import PrivateListener, peer_credentials
from demotrace.policy import CapturePolicy, WindowContext

log = logging.getLogger(__name__)

BROWSER_SOCKET_NAME = "browser.sock"
# At most this many hosts at once (one per browser profile that runs the extension).
MAX_CONNECTIONS = 16

Subscriber = Callable[[int, BrowserReport | None], None]


class BridgeError(Exception):
    """The bridge cannot listen; the message says why."""


def default_browser_socket() -> Path:
    """``$XDG_RUNTIME_DIR/demotrace/browser.sock`` (beside the control socket), or
    ``$DEMOTRACE_BROWSER_SOCKET``."""
    override = os.environ.get("DEMOTRACE_BROWSER_SOCKET")
    if override:
        return Path(override)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "demotrace" if runtime else Path.home() / ".cache" / "demotrace"
    return base / BROWSER_SOCKET_NAME


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (Linux /proc), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ")" ends it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1])


class BrowserBridge:
    """Listens for the extension's host; ``start``/``stop``; ``subscribe`` to hear every report."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_browser_socket()
        self._lock = threading.Lock()
        self._pages = BrowserPages()
        self._connections: Counter[int] = Counter()
        self._subscriber: Subscriber | None = None
        self._server = PrivateListener(self.path, self._serve, "demotrace-browser")
        self.reports = 0  # reports taken, for the recorder's exit summary
        self.refused = 0  # connections or reports refused

    # -- the recorder's side -------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber | None) -> BrowserPages:
        """Hear every report from now on (None: stop); returns what the reports so far say, to start from."""
        with self._lock:
            self._subscriber = subscriber
            return self._pages.copy()

    def contexts(self, windows: Sequence[WindowInfo], policy: CapturePolicy) -> list[WindowContext | None]:
        """What the policy is told about each visible window (bottom to top)."""
        with self._lock:
            return [self._pages.context(w, policy, focused=False, stack=windows) for w in windows]

    def sensitive_boxes(self, windows: Sequence[WindowInfo]) -> list[Box]:
        """Screen boxes of the password and card fields that have focus in the visible windows."""
        with self._lock:
            return self._pages.sensitive_boxes(windows)

    # -- listening -----------------------------------------------------------------------------

    def start(self) -> BrowserBridge:
        try:
            self._server.start()
        except OSError as error:
            raise BridgeError(f"cannot listen for the browser extension on {self.path}: {error}") from error
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> BrowserBridge:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _browser_of(self, conn: socket.socket) -> int | None:
        """The browser process a connection speaks for: its host's parent, if the host is ours."""
        pid, uid = peer_credentials(conn)
        if uid != os.getuid():
            log.warning("browser bridge: refused a connection from uid %d", uid)
            return None
        browser = parent_pid(pid)
        if browser is None or browser <= 1:
            log.warning("browser bridge: the host (pid %d) has no browser parent", pid)
            return None
        return browser

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            browser = self._browser_of(conn)
            if browser is None:
                self.refused += 1
                return
            with self._lock:
                if sum(self._connections.values()) >= MAX_CONNECTIONS:
                    self.refused += 1
                    return
                self._connections[browser] += 1
                self._pages.connected(browser)
            reader = conn.makefile("rb")  # closed with conn below: both must go for the peer to see EOF
            try:
                while (line := reader.readline(MAX_REPORT_BYTES + 1)) and not self._server.stopping.is_set():
                    if not line.endswith(b"\n"):
                        log.warning(
                            "browser bridge: a report longer than %d bytes; hanging up", MAX_REPORT_BYTES
                        )
                        self.refused += 1
                        return
                    try:
                        report = decode_report(line)
                    except ReportError as error:
                        log.warning("browser bridge: not a report (%s); hanging up", error)
                        self.refused += 1
                        return
                    self._take(browser, report)
            except OSError:
                pass  # the host went away
            finally:
                reader.close()
                self._take(browser, None)

    def _take(self, browser: int, report: BrowserReport | None) -> None:
        with self._lock:
            if report is not None:
                self._pages.report(browser, report)
                self.reports += 1
            else:
                self._connections[browser] -= 1
                if self._connections[browser] > 0:
                    return  # another host of the same browser still speaks for it
                del self._connections[browser]
                self._pages.disconnected(browser)
            subscriber = self._subscriber
        if subscriber is not None:
            subscriber(browser, report)
