"""The masked-echo thread: grabs the area where typing lands and reads it with ``masked_echo``.

At a field's first printable key the processing thread asks for a look at the area as it is; once a few
keys went in, for a look at their echo after it has rendered. Both come as :class:`EchoLook` requests, and
each look at an echo is answered with one :class:`EchoChecked` through the ``post`` callback it is handed.
Two small grabs per field; the pixels stay in this thread's memory: nothing of them is encoded, stored or
written. Which areas, when, and what a verdict does are decided in :mod:`demotrace.capture.password`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from demotrace.capture.masked_echo import EchoReading, GreyImage, grey, read_masked_echo
from demotrace.capture.messages import EchoChecked, EchoLook, Message
from demotrace.threads import name_os_thread

log = logging.getLogger(__name__)


class EchoChecker:
    """Looks at the screen on its own thread when asked; verdicts go to ``post``."""

    def __init__(self, display: str | None, post: Callable[[Message], None]) -> None:
        self._display = display
        self._post = post
        self._requests: queue.SimpleQueue[EchoLook | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="demotrace-echo", daemon=True)
        self.cpu_seconds = 0.0
        self.looks = 0

    def start(self) -> None:
        self._thread.start()

    def look(self, request: EchoLook) -> None:
        self._requests.put_nowait(request)

    def finish(self) -> None:
        self._requests.put_nowait(None)
        self._thread.join()

    def _run(self) -> None:
        import mss

        name_os_thread()
        screen: Any = None
        try:
            screen = mss.MSS(display=self._display)
        except Exception as failure:
            log.warning("masked-echo check off: cannot grab the screen: %s", failure)
        before: tuple[int, GreyImage] | None = None
        try:
            while (request := self._requests.get()) is not None:
                if request.typed is None:
                    pixels = self._grab(screen, request.area)
                    before = None if pixels is None else (request.check_id, pixels)
                    continue
                delay = request.not_before - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # one wait for the echo to render, not a poll
                reading = EchoReading("undecided", 0, "no picture of the area")
                after = self._grab(screen, request.area)
                if after is not None and before is not None and before[0] == request.check_id:
                    started = time.thread_time()
                    try:
                        reading = read_masked_echo(before[1], after, request.typed)
                    except Exception:  # a verdict must come, or every field would wait for its timeout
                        log.exception("masked-echo reading failed")
                    self.cpu_seconds += time.thread_time() - started
                    self.looks += 1
                self._post(EchoChecked(time.perf_counter_ns(), request.check_id, reading))
        finally:
            if screen is not None:
                screen.close()

    def _grab(self, screen: Any, area: dict[str, int]) -> GreyImage | None:
        if screen is None:
            return None
        try:
            started = time.thread_time()
            shot = screen.grab(area)
            pixels = grey(Image.frombuffer("RGB", shot.size, shot.raw, "raw", "BGRX", 0, 1))
            self.cpu_seconds += time.thread_time() - started
            return pixels
        except Exception:
            log.exception("masked-echo grab failed")
            return None
