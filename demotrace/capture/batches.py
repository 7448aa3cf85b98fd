"""The output side of the processor: typed-text redaction, then the next batch, written in t order.

Typed text: keys go through ``TypingBurstRedactor``, which holds a typing burst until it ends and releases
it with sensitive spans replaced by ``Marker(kind="redacted", text="<KIND>")``. Batches hold back whatever
sorts after the held burst, so events stay in t order across batches.
"""

from __future__ import annotations

import time
import uuid

from demotrace.capture.sink import RecordSink
from demotrace.model import Batch, Event, FrameTaken, Key, Marker, SessionHeader
from demotrace.redact.typing_burst import TypingBurstRedactor

QUIET_MARGIN_SECONDS = 0.01


class PendingBatch:
    """Events for the next batch of one session; the first batch carries the session header."""

    def __init__(
        self, sink: RecordSink, header: SessionHeader, batch_seconds: float, batch_max_events: int
    ) -> None:
        self._sink = sink
        self._header: SessionHeader | None = header
        self._session_id, self._device_id = header.session_id, header.device_id
        self.batch_seconds = batch_seconds
        self._batch_max_events = batch_max_events
        self._events: list[Event] = []
        self.first_unflushed_ns: int | None = None  # perf_counter stamp of the oldest unwritten input
        self._seq = 0

    def add(self, event: Event) -> None:
        """Queue an event that may be written for the next batch."""
        self._events.append(event)
        if self.first_unflushed_ns is None:
            self.first_unflushed_ns = time.perf_counter_ns()

    def unflushed_since(self, ns: int) -> None:
        """Input not queued here yet (a pointer path being drawn) waits since ``ns``."""
        if self.first_unflushed_ns is None:
            self.first_unflushed_ns = ns

    def due(self, now_ns: int, extra: int = 0) -> bool:
        """Full (with ``extra`` events not queued yet) or old enough to write."""
        if self.first_unflushed_ns is None:
            return False
        return len(self._events) + extra >= self._batch_max_events or (
            now_ns - self.first_unflushed_ns >= self.batch_seconds * 1e9
        )

    def write(self, held_from_t: float | None) -> None:
        """Write what is ready in one batch. Events the redactor still holds sort at or after
        ``held_from_t`` (the start of its burst): what sorts later waits for them (frames of keys inside
        the burst), so t never goes back across batches."""
        if not self._events and self._header is None:
            return
        limit = held_from_t
        ready = self._events if limit is None else [event for event in self._events if event.t <= limit]
        waiting = [] if limit is None else [event for event in self._events if event.t > limit]
        self.first_unflushed_ns = None  # waiting events are written once the burst is released
        if not ready and self._header is None:
            return
        # A frame shares its trigger's t and must come first: it shows the screen before the action.
        events = sorted(ready, key=lambda event: (event.t, not isinstance(event, FrameTaken)))
        batch = Batch(
            batch_id=uuid.uuid4().hex,
            session_id=self._session_id,
            device_id=self._device_id,
            seq=self._seq,
            events=events,
            header=self._header,
        )
        self._sink.append([batch])
        self._seq += 1
        self._header = None
        self._events = waiting


class RedactedOutput:
    """Everything the processor writes passes here: typed text through the burst redactor, which holds a
    typing burst until it ends and releases it with sensitive spans replaced by markers; then the batch."""

    def __init__(self, batch: PendingBatch) -> None:
        self.batch = batch
        self.redactor = TypingBurstRedactor()
        self.burst_start_t: float | None = None  # of the burst the redactor holds (batches stop there)
        self.last_key_t: float | None = None  # the last key into that burst

    def _released(self, events: list[Event]) -> None:
        for event in events:
            self.batch.add(event)
        if not self.redactor.open:
            self.burst_start_t = None

    def emit(self, event: Event) -> None:
        """Everything but frames passes the typed-text redactor, which may hold it until its burst ends."""
        if isinstance(event, FrameTaken):
            self.batch.add(event)  # pixels, not typed text; the batch split keeps it in order
            return
        redactor = self.redactor
        was_open = redactor.open
        released = redactor.feed(event)
        if redactor.open and (not was_open or released):
            self.burst_start_t = event.t  # a new burst starts with this event
        if redactor.open and isinstance(event, Key):
            self.last_key_t = event.t
        self._released(released)

    def end_burst(self) -> None:
        if self.redactor.open:
            self._released(self.redactor.end_burst().events)

    def flush_if_quiet(self, t: float) -> None:
        if self.redactor.open:
            self._released(self.redactor.flush_if_quiet(t))

    def quiet_at(self) -> float | None:
        """When the held burst counts as ended if no key comes (perf_counter seconds), if one is held.
        The redactor ends a quiet burst once *more* than its gap has passed: wake just after that."""
        if not self.redactor.open or self.last_key_t is None:
            return None
        return self.last_key_t + self.redactor.gap_s + QUIET_MARGIN_SECONDS

    def cut_password(self, marker: Marker) -> frozenset[str]:
        """The held burst is a password from ``marker.t`` on: release what came before, drop the rest and
        write ``marker`` (``<PASSWORD>``) in its place. Returns the keys pressed in the password and not
        released yet (their releases must be dropped too)."""
        cut = self.redactor.end_burst_as_password(marker.t)
        self._released(cut.events)
        self.batch.add(marker)
        return cut.held

    def write(self) -> None:
        self.batch.write(held_from_t=self.burst_start_t)
