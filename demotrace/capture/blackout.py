"""Frames show only what may be captured: every window the policy does not allow is painted black.

Pure geometry over the stacking order (bottom to top): a window that may not be captured is black
wherever no allowed window lies above it, so an allowed window on top of a denied one stays visible
and a denied window on top of an allowed one hides it. The title bar and borders count as the
window's own (its outer rectangle). The bare desktop behind all windows is left as it is.

The boxes are painted in memory on the grabbed pixels (``redact.paint``), before the frame is encoded or
written anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from demotrace.capture.platform import WindowInfo
from demotrace.geometry import Box
from demotrace.model import Monitor
from demotrace.policy import Decision


def window_box(window: WindowInfo) -> Box:
    return Box(window.x, window.y, window.x + window.width, window.y + window.height)


StackedWindow = tuple[WindowInfo, Decision]


def black_boxes(monitor: Monitor, windows: Sequence[StackedWindow]) -> list[Box]:
    """The disjoint-or-overlapping boxes to paint black, relative to the monitor's top-left corner.

    ``windows`` are bottom to top, each with the decision for it.
    """
    screen = Box(monitor.left, monitor.top, monitor.left + monitor.width, monitor.top + monitor.height)
    boxes: list[Box] = []
    for index, (window, decision) in enumerate(windows):
        if decision.screen_allowed:
            continue
        pieces = [window_box(window).intersection(screen)]
        for above, above_decision in windows[index + 1 :]:
            if above_decision.screen_allowed:
                pieces = [piece for box in pieces for piece in box.minus(window_box(above))]
        boxes.extend(piece for piece in pieces if not piece.empty)
    return [
        Box(
            box.left - monitor.left, box.top - monitor.top, box.right - monitor.left, box.bottom - monitor.top
        )
        for box in boxes
    ]
