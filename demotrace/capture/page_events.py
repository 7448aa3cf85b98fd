"""The processor's side of the browser extension's reports, as a pure state machine.

A report comes a few milliseconds after the X event it follows: the focus moves to a browser window,
then the extension says which page it shows; a click lands, then the page says on what. Until the
report is in, the processor holds every new message (as it does for a masked-echo verdict), so a key
typed right after is decided with the page it went to, and a click's element is written right after
the click. The wait ends with the report, or after ``REPORT_WAIT_SECONDS`` (a click on the browser's
own toolbar, which no page sees; the focus report that arrived before the X event): then the latest
reports decide, and a window none of them matches is an unknown page, which is not captured.

:class:`PageEvents` is fed the focused window, presses and reports with the time now; it says how
long to hold, and turns an element report into an :class:`~demotrace.model.Element` event (box in
screen pixels) when the policy records page elements. No X, no threads, no clock reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from demotrace.capture.browser_pages import (
    BrowserPages,
    BrowserReport,
    ElementReport,
    WindowsReport,
    element_box,
    focused_page,
    takes_typing,
)
from demotrace.capture.messages import Clock
from demotrace.capture.platform import WindowInfo
from demotrace.model import Element, PageElement

# How long the processor holds messages for a report (the extension answers in ~10 ms; a busy machine
# may take longer, and nothing is lost by waiting: messages are held, not dropped).
REPORT_WAIT_SECONDS = 0.3


@dataclass(frozen=True)
class PageNews:
    """What a report means for the processor: an ``element`` event to write, and whether the typing
    now goes to a password or card field (``sensitive_focus``: end the burst, so the next key asks)."""

    element: Element | None = None
    sensitive_focus: bool = False


NO_NEWS = PageNews()


class PageEvents:
    """Waits for the reports that follow a focus change or a click, and reads them."""

    def __init__(self, clock: Clock, pages: BrowserPages) -> None:
        self._clock = clock
        self.pages = pages
        self._awaited: tuple[int, Literal["windows", "element"]] | None = None  # (browser pid, kind)
        self._deadline: float | None = None  # perf_counter seconds

    @property
    def waiting(self) -> bool:
        return self._deadline is not None

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def _expect(self, info: WindowInfo | None, kind: Literal["windows", "element"], now: float) -> None:
        if info is None or info.pid is None or self.pages.state_of(info) is None:
            return  # not a browser that runs the extension: no report will come
        self._awaited = (info.pid, kind)
        self._deadline = now + REPORT_WAIT_SECONDS

    def focus_changed(self, info: WindowInfo | None, now: float) -> None:
        """The focus moved to ``info``: if its browser reports, wait for the page it shows."""
        self._expect(info, "windows", now)

    def pressed(self, info: WindowInfo | None, now: float) -> None:
        """A press landed in ``info``, the focused window: wait for what the page says it hit."""
        self._expect(info, "element", now)

    def overdue(self, now: float) -> bool:
        """Stop waiting if the report is late (True then)."""
        if self._deadline is None or now < self._deadline:
            return False
        self._awaited = self._deadline = None
        return True

    def _arrived(self, pid: int, report: BrowserReport | None) -> None:
        if self._awaited is None or self._awaited[0] != pid:
            return
        kind = "windows" if isinstance(report, WindowsReport) else "element"
        if report is None or kind == self._awaited[1]:
            self._awaited = self._deadline = None

    def take(
        self,
        pid: int,
        report: BrowserReport | None,
        ns: int,
        *,
        window: WindowInfo | None,
        record_elements: bool,
    ) -> PageNews:
        """A report (None: the browser's host hung up) from browser ``pid``, in queue order.
        ``window`` is the focused window after it; ``record_elements``: the policy records page
        elements and the window may be captured."""
        self._arrived(pid, report)
        if report is None:
            self.pages.disconnected(pid)
            return NO_NEWS
        self.pages.report(pid, report)
        if not isinstance(report, ElementReport) or report.event == "blur":
            return NO_NEWS
        if window is None or window.pid != pid:
            return NO_NEWS
        page = focused_page(window, self.pages.browsers[pid].windows)
        if page is None or page.id != report.window or report.incognito:
            return NO_NEWS  # not the page in front (or a private one): nothing of it is written
        sensitive = bool(report.sensitive) and (report.event == "focus" or takes_typing(report))
        if not record_elements:
            return PageNews(sensitive_focus=sensitive)
        box = element_box(window, page, report.box) if report.box is not None else None
        scale = window.width / page.width if page.width > 0 else 1.0
        element = PageElement(
            role=report.role,
            name=report.name,
            input_type=report.input_type,
            autocomplete=report.autocomplete,
            left=box.left if box is not None else 0,
            top=box.top if box is not None else 0,
            width=box.width if box is not None else 0,
            height=box.height if box is not None else 0,
        )
        clock = self._clock
        return PageNews(
            element=Element(
                t=clock.t(ns),
                wall=clock.wall(ns),
                event=report.event,
                element=element,
                x=round(report.x * scale) if report.x is not None else None,
                y=round(report.y * scale) if report.y is not None else None,
            ),
            sensitive_focus=sensitive,
        )

    def sensitive_field(self, window: WindowInfo | None) -> bool | None:
        """A password probe: does the focused page's focused field take a password or a card number?
        None (cannot tell) outside browsers that report."""
        if self.pages.state_of(window) is None:
            return None
        return self.pages.sensitive_focus(window) is not None
