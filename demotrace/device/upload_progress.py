"""What the uploader is doing right now, for `demotrace status`: a thread-safe progress record.

The upload thread reports as it goes (a burst starts, a record starts, bytes reach the collector, a
record is done, the burst ends); any other thread (the control socket's) takes a snapshot. Each report
and the snapshot hold one lock for a few assignments, so the upload never waits on a status request.

A burst is one uninterrupted run of sending: it starts when the uploader begins to send and ends when it
stops (nothing left, a hold, a failure, stop()). Its total is what it has sent plus what the spool still
held at the last page, so records committed during a burst extend it.
"""

from __future__ import annotations

import threading
from typing import Any


class UploadProgress:
    """Progress of the current (or last) upload burst; reported by one thread, read by any."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self._started: float | None = None
        self._ended: float | None = None
        self._records_sent = 0
        self._records_left = 0
        self._bytes_sent = 0
        self._record_bytes_sent = 0
        self._record_bytes_total = 0

    # --- reports from the upload thread ------------------------------------------------------------

    def burst_started(self, now: float, records_left: int) -> None:
        with self._lock:
            self._active = True
            self._started = now
            self._ended = None
            self._records_sent = 0
            self._records_left = records_left
            self._bytes_sent = 0
            self._record_bytes_sent = self._record_bytes_total = 0

    def records_left(self, count: int) -> None:
        """What the spool still holds to send, read again at each page."""
        with self._lock:
            self._records_left = count

    def record_started(self, body_bytes: int, already_received: int = 0) -> None:
        with self._lock:
            self._record_bytes_total = body_bytes
            self._record_bytes_sent = already_received

    def bytes_went(self, size: int) -> None:
        with self._lock:
            self._bytes_sent += size
            self._record_bytes_sent += size

    def record_done(self) -> None:
        with self._lock:
            self._records_sent += 1
            self._records_left = max(0, self._records_left - 1)
            self._record_bytes_sent = self._record_bytes_total = 0

    def burst_ended(self, now: float) -> None:
        with self._lock:
            if self._active:
                self._active = False
                self._ended = now
                self._record_bytes_sent = self._record_bytes_total = 0

    # --- read by anyone ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The progress as plain JSON values; ``active`` False after a burst keeps its figures (the last
        upload), and ``started`` None means nothing has been sent since the recorder started."""
        with self._lock:
            return {
                "active": self._active,
                "started": self._started,
                "ended": self._ended,
                "records_sent": self._records_sent,
                "records_total": self._records_sent + self._records_left,
                "bytes_sent": self._bytes_sent,
                "record_bytes_sent": self._record_bytes_sent,
                "record_bytes_total": self._record_bytes_total,
            }
