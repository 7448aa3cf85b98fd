"""Batches → sessions: one copy of each batch, in order, and the session's events sorted by time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from demotrace.model import Batch, Event, SessionHeader


@dataclass(frozen=True)
class SessionEvents:
    session_id: str
    header: SessionHeader
    events: list[Event]


def session_events(session_id: str, batches: Iterable[Batch]) -> SessionEvents | None:
    """One session from its batches in arrival order (one copy per batch_id, in seq order, events
    sorted by t); None without a header."""
    by_id: dict[str, Batch] = {}
    for batch in batches:
        # An upload may be retried: the same batch_id twice carries the same events.
        by_id.setdefault(batch.batch_id, batch)
    ordered = sorted(by_id.values(), key=lambda batch: batch.seq)
    header = next((batch.header for batch in ordered if batch.header is not None), None)
    if header is None:
        return None
    events = [event for batch in ordered for event in batch.events]
    events.sort(key=lambda event: event.t)  # stable: equal times keep their recorded order
    return SessionEvents(session_id, header, events)


def session_order(start_wall: float, session_id: str) -> tuple[float, str]:
    """Where a session goes in a dataset: by start time, then id (every engine writes this order)."""
    return (start_wall, session_id)


def collect_sessions(records: Iterable[Batch]) -> tuple[list[SessionEvents], int]:
    """Group batches into sessions (see ``session_events``).

    Returns the sessions, ordered by start time, and how many sessions had no header.
    """
    batches_by_session: dict[str, dict[str, Batch]] = {}
    for batch in records:
        batches_by_session.setdefault(batch.session_id, {}).setdefault(batch.batch_id, batch)
    sessions: list[SessionEvents] = []
    without_header = 0
    for session_id, by_id in batches_by_session.items():
        session = session_events(session_id, by_id.values())
        if session is None:
            without_header += 1
        else:
            sessions.append(session)
    sessions.sort(key=lambda session: session_order(session.header.wall, session.session_id))
    return sessions, without_header
