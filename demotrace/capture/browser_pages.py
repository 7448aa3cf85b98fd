"""What the browser extension reports, and which page each browser window shows (pure).

The extension (``extension/`` at the repository root) reports through its native messaging host
(``device/browser_host.py``) over the recorder's browser socket (``capture/browser_bridge.py``). Two
kinds of report, one JSON object each:

- ``windows``: every browser window the extension can see - its id, whether it has focus, whether it is
  private, its bounds on the screen and the origin and path of its active tab's URL (the extension
  drops query, fragment and credentials);
- ``element``: a click or a focus change in a page - the element's role, accessible name, input type,
  autocomplete hint, whether it takes a password or a card number, and its box on the screen.

A report belongs to the browser process that started the host (the host's parent, known from the
kernel, never from the report): the X window of a browser carries that process id (``_NET_WM_PID``).
Within one browser a window is told from the others by its bounds, which Chromium and Firefox report
as the X window's own rectangle. Windows with the same bounds (maximised ones) cannot be told apart by
that: the focused one is the extension's focused window, any other is unknown. A window the extension
cannot see (a private window it is not allowed in) is unknown too; the policy never captures an unknown
page (``policy.window_denial``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from demotrace.capture.platform import WindowInfo
from demotrace.geometry import Box
from demotrace.policy import CapturePolicy, WindowContext, is_browser_app

# One report is a few hundred bytes; the host refuses anything bigger than this, and so do we.
MAX_REPORT_BYTES = 16 * 1024
# Bounds of a browser window and its X window agree to the pixel; this much slack for rounding.
BOUNDS_SLACK_PX = 2
Sensitivity = Literal["", "password", "card"]


class PageWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One browser window as the extension sees it (bounds in the browser's screen units)."""

    id: int
    focused: bool
    incognito: bool
    left: float
    top: float
    width: float
    height: float
    url: str


class WindowsReport(msgspec.Struct, frozen=True, tag="windows", tag_field="type", forbid_unknown_fields=True):
    windows: list[PageWindow]


class ElementBox(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    left: float
    top: float
    width: float
    height: float


class ElementReport(msgspec.Struct, frozen=True, tag="element", tag_field="type", forbid_unknown_fields=True):
    """A click (``x``, ``y``: its screen point) or a focus change (``blur``: focus left the page's
    fields) in a page of browser window ``window``; ``frame`` 0 is the top frame."""

    event: Literal["click", "focus", "blur"]
    window: int
    incognito: bool = False
    frame: int = 0
    x: float | None = None
    y: float | None = None
    role: str = ""
    name: str = ""
    input_type: str = ""
    autocomplete: str = ""
    sensitive: Sensitivity = ""
    box: ElementBox | None = None


BrowserReport = WindowsReport | ElementReport
_decoder = msgspec.json.Decoder(BrowserReport)
_encoder = msgspec.json.Encoder()


class ReportError(ValueError):
    """A report that is not one of ours; the message says why."""


def decode_report(data: bytes) -> BrowserReport:
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"report of {len(data)} bytes (at most {MAX_REPORT_BYTES})")
    try:
        report: BrowserReport = _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise ReportError(str(error)) from error
    return report


def encode_report(report: BrowserReport) -> bytes:
    return _encoder.encode(report)


TEXT_ROLES = frozenset({"textbox", "searchbox", "combobox", "spinbutton"})


def takes_typing(report: ElementReport) -> bool:
    """Does the element take typed text (so a click on it puts the typing there)?"""
    return bool(report.sensitive) or report.role in TEXT_ROLES


def _scale(info: WindowInfo, page: PageWindow) -> float:
    """Screen pixels per browser screen unit (1 unless the browser scales the desktop, HiDPI)."""
    return info.width / page.width if page.width > 0 else 1.0


def same_bounds(info: WindowInfo, page: PageWindow) -> bool:
    if page.width <= 0 or page.height <= 0:
        return False
    scale = _scale(info, page)
    edges = (
        (info.x, page.left * scale),
        (info.y, page.top * scale),
        (info.x + info.width, (page.left + page.width) * scale),
        (info.y + info.height, (page.top + page.height) * scale),
    )
    return all(abs(a - b) <= BOUNDS_SLACK_PX for a, b in edges)


def _same_rect(a: WindowInfo, b: WindowInfo) -> bool:
    return (a.x, a.y, a.width, a.height) == (b.x, b.y, b.width, b.height)


def focused_page(info: WindowInfo, windows: Sequence[PageWindow]) -> PageWindow | None:
    """The page of the focused X window: the extension's focused window, if its bounds agree."""
    for page in windows:
        if page.focused and same_bounds(info, page):
            return page
    return None


def match_pages(stack: Sequence[WindowInfo], windows: Sequence[PageWindow]) -> dict[int, PageWindow]:
    """X window id -> page, for one browser's X windows (bottom to top). A window is matched when its
    bounds belong to exactly one reported window and no other X window of the browser has them; among
    X windows with the same bounds, only the top one, and only to the extension's focused window."""
    matched: dict[int, PageWindow] = {}
    for index, info in enumerate(stack):
        candidates = [page for page in windows if same_bounds(info, page)]
        twins = [other for other in stack if _same_rect(other, info)]
        if len(candidates) == 1 and len(twins) == 1:
            matched[info.window_id] = candidates[0]
        elif not any(_same_rect(other, info) for other in stack[index + 1 :]):
            focused = [page for page in candidates if page.focused]
            if len(focused) == 1:
                matched[info.window_id] = focused[0]
    return matched


@dataclass
class BrowserState:
    """The latest reports of one browser process."""

    windows: list[PageWindow] = field(default_factory=list)
    windows_seq: int = 0  # how many windows reports so far: the processor waits for a new one
    focus: ElementReport | None = None  # the latest focus change in a top frame, or a blur
    # The latest password or card field that had focus, kept after focus moves on: the frame before a click
    # is grabbed after the browser has already moved focus (on mouse-down), with the field still on screen.
    last_sensitive: ElementReport | None = None


class BrowserPages:
    """The latest reports of every connected browser, by process id, and what they say about a window.

    The processor keeps one, fed in queue order; the bridge keeps another for the frame thread.
    """

    def __init__(self) -> None:
        self.browsers: dict[int, BrowserState] = {}

    def connected(self, pid: int) -> None:
        self.browsers.setdefault(pid, BrowserState())

    def disconnected(self, pid: int) -> None:
        self.browsers.pop(pid, None)

    def copy(self) -> BrowserPages:
        pages = BrowserPages()
        pages.browsers = {pid: dataclasses.replace(state) for pid, state in self.browsers.items()}
        return pages

    def report(self, pid: int, report: BrowserReport) -> None:
        state = self.browsers.setdefault(pid, BrowserState())
        if isinstance(report, WindowsReport):
            state.windows = list(report.windows)
            state.windows_seq += 1
            kept = state.last_sensitive
            if kept is not None and all(window.id != kept.window for window in state.windows):
                state.last_sensitive = None  # its page is gone
        elif report.event != "click" or takes_typing(report):
            state.focus = report  # a click into a field focuses it: the focus report may come later
            if report.sensitive and report.box is not None:
                state.last_sensitive = report

    def state_of(self, info: WindowInfo | None) -> BrowserState | None:
        if info is None or info.pid is None:
            return None
        return self.browsers.get(info.pid)

    def page_of(
        self, info: WindowInfo, *, focused: bool, stack: Sequence[WindowInfo] = ()
    ) -> PageWindow | None:
        """The page ``info`` shows: as the focused window, or as one of ``stack`` (the visible windows)."""
        state = self.state_of(info)
        if state is None:
            return None
        if focused:
            return focused_page(info, state.windows)
        own = [window for window in stack if window.pid == info.pid] or [info]
        return match_pages(own, state.windows).get(info.window_id)

    def context(
        self,
        info: WindowInfo | None,
        policy: CapturePolicy,
        *,
        focused: bool,
        stack: Sequence[WindowInfo] = (),
    ) -> WindowContext | None:
        """What the policy is told about a window: for a browser, the page's URL and privacy too."""
        if info is None:
            return None
        base = WindowContext(app=info.app, instance=info.instance, process=info.process, title=info.title)
        state = self.state_of(info)
        if state is None:
            return base
        page = self.page_of(info, focused=focused, stack=stack)
        if page is None:
            return msgspec.structs.replace(base, extension=True)
        return msgspec.structs.replace(base, extension=True, url=page.url, private=page.incognito)

    def sensitive_focus(self, info: WindowInfo | None) -> ElementReport | None:
        """The focused field of the focused window's page, if it takes a password or a card number."""
        state = self.state_of(info)
        if info is None or state is None:
            return None
        page = focused_page(info, state.windows)
        focus = state.focus
        if page is None or focus is None or focus.window != page.id or not focus.sensitive:
            return None
        return focus

    def sensitive_boxes(self, stack: Sequence[WindowInfo]) -> list[Box]:
        """Screen boxes (pixels) of password and card fields that have focus in the visible windows, and of
        the last one that had focus in a page still shown (see BrowserState.last_sensitive)."""
        boxes: list[Box] = []
        for pid, state in self.browsers.items():
            fields = [
                field
                for field in (state.focus, state.last_sensitive)
                if field is not None and field.sensitive and field.box is not None
            ]
            own = [window for window in stack if window.pid == pid]
            for window_id, page in match_pages(own, state.windows).items():
                info = next(window for window in own if window.window_id == window_id)
                for sensitive in fields:
                    if page.id == sensitive.window and sensitive.box is not None:
                        box = element_box(info, page, sensitive.box)
                        if box not in boxes:
                            boxes.append(box)
        return boxes


def element_box(info: WindowInfo, page: PageWindow, box: ElementBox) -> Box:
    """An element's box in screen pixels, a pixel wider on each side (anti-aliased edges)."""
    scale = _scale(info, page)
    return Box(
        int(box.left * scale) - 1,
        int(box.top * scale) - 1,
        int((box.left + box.width) * scale + 0.999) + 1,
        int((box.top + box.height) * scale + 0.999) + 1,
    )


def is_browser(policy: CapturePolicy, info: WindowInfo | None, pages: BrowserPages) -> bool:
    """Is this a browser window (a listed browser app, or a process whose extension reports)?"""
    if info is None:
        return False
    if pages.state_of(info) is not None:
        return True
    return is_browser_app(policy, WindowContext(app=info.app, instance=info.instance, process=info.process))
