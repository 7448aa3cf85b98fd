"""Live typing redaction (:class:`TypingBurstRedactor`): a typing burst is held in memory and released
redacted. Pure: events in, events out, no threads, no I/O, no clock reads.

The design
    The recorder feeds every event to :meth:`TypingBurstRedactor.feed` and writes only what it returns.
    Key events of a typing burst are held in memory until the burst ends: a non-typing action (click,
    scroll, focus change, marker, or a key that does not type — arrows, delete, ctrl+c …), a pause longer
    than ``gap_s``, or :meth:`end_burst` (the recorder's idle timer, or stop). Events that cannot carry
    typed text (frames, pointer paths, ctrl/alt/super) ride along in order and are always kept.

    1. A model of the text. Each character key press pushes a *cell* (char, its key-down, its position);
       backspace pops the last cell. Enter and tab type "\\n" and "\\t", so a pasted PEM block is one burst.
       Positions are those of a stack, so a cell standing in the final text was typed at its final index.
    2. Detection on the final text, after all backspaces: a card typed with a corrected digit is whole.
    3. Detection on what was erased. When a run of backspaces ends, the detectors also read the erased
       characters with the text before them (``SNAPSHOT_CONTEXT_CHARS``); anything sensitive there is
       flagged. So a card typed and then deleted entirely, which the final text never shows, is caught;
       cells flagged while standing stay flagged even if later edits break the pattern.
    4. What is dropped. A standing cell inside a sensitive span (from 2, or a run of flagged cells) is
       dropped. An erased cell is dropped, together with every other cell its backspace run erased and
       with those backspaces, when the run touched a span's positions (start to end inclusive: an extra
       digit typed after a card and erased counts) or held a flagged cell. Key-ups share the fate of their
       key-down; shift/AltGr/caps lock/dead keys that of the character they change (the next one typed;
       for a release, the one before), since a key's case pattern is part of it.
    5. What is kept. Every other event, in order, plus one ``Marker(kind="redacted", text="<KIND>")`` per
       span at the time of the span's first key. A dropped cell's erasing backspace is always dropped with
       it and vice versa, so replaying the kept keys (chars append, backspace deletes one) with each marker
       inserting its placeholder rebuilds exactly the redacted text — tested.

    A burst found to be going into a password field (the recorder's masked-echo check) is cut with
    :meth:`TypingBurstRedactor.end_burst_as_password`: no key from the password's first on is kept.

    Memory is bounded: a burst whose text passes ``max_chars`` (or whose events pass ``max_events``) is
    *fully redacted*: everything typed in it is dropped and it yields a single ``<REDACTED>`` marker.
    Nobody types 4,096 characters without a pause or a non-typing key; bursts that long come from
    auto-type tools (password managers, key pasting), which is exactly text we must not keep.

    Limits: text split across bursts (typed, clicked elsewhere in the field, typed the rest) is read as
    two texts; a field edited in the middle (arrows, then typing) ends the burst at the arrow.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from demotrace.model import Button, Event, Key, Marker, Scroll, Window
from demotrace.protocol import REDACTED_MARKER_KIND
from demotrace.redact.detectors.base import Detector, Match
from demotrace.redact.text import (
    default_detectors,
    find_sensitive,
    merge_overlapping,
    placeholder,
    replace_spans,
)

OVERFLOW_KIND = "REDACTED"
# A pause this long ends the typing burst the redactor holds. Longer than the dataset's 2 s typing gap on
# purpose: someone reading a card number off the card pauses
# between groups, and splitting the number would hide it from every detector.
REDACTION_BURST_GAP_SECONDS = 10.0
MAX_BURST_CHARS = 4096
MAX_BURST_EVENTS = 16384
SNAPSHOT_CONTEXT_CHARS = 256

_COMMAND_MODIFIERS = frozenset({"ctrl", "alt", "super"})
# Keys that change which character the next key types; their timing reveals a secret's case pattern.
_CASE_KEYS = frozenset({"shift", "shiftright", "altgr", "capslock"})
_CASE_KEY_PREFIX = "dead_"
# Events that end a burst: the user did something other than type.
_BURST_ENDING_EVENTS = (Button, Scroll, Window, Marker)


@dataclass(frozen=True)
class RedactedBurst:
    """What a finished burst may write: its redacted ``text``, the ``events`` to keep (in order, markers
    in place of sensitive keys) and the sensitive ``matches`` (in the unredacted final text)."""

    text: str
    events: list[Event]
    matches: list[Match]


@dataclass(frozen=True)
class PasswordCut:
    """What a burst cut short as a password may write (``events``, in order, no key typed in the
    password among them), and the keys pressed in the password and not released yet (``held``: their
    releases must be dropped too)."""

    events: list[Event]
    held: frozenset[str]


@dataclass(eq=False)
class _Cell:
    char: str
    down_index: int
    position: int
    flagged: str | None = None  # a detector saw this character as part of sensitive text of this kind
    erasure: _Erasure | None = None  # the backspace run that deleted it


@dataclass(eq=False)
class _Erasure:
    cells: list[_Cell] = field(default_factory=list)  # in the order they were deleted (last typed first)
    dropped: bool = False


# How an event's fate is decided once the burst is over.
@dataclass(frozen=True)
class _Always:
    keep: bool


@dataclass(frozen=True)
class _TypedBy:
    cell: _Cell


@dataclass(frozen=True)
class _ErasedBy:
    erasure: _Erasure


@dataclass(frozen=True)
class _ReleaseOf:
    down_indices: tuple[int, ...]


@dataclass(frozen=True)
class _Changes:
    """A case key: it belongs to the next character typed (press) or the previous one (release)."""

    forward: bool


_Owner = _Always | _TypedBy | _ErasedBy | _ReleaseOf | _Changes


def _has_command_modifier(key: Key) -> bool:
    return not _COMMAND_MODIFIERS.isdisjoint(key.modifiers)


def _typed_char(key: Key) -> str | None:
    """The character a key press adds to the text, or None."""
    char = key.char
    if not key.down or char is None or len(char) != 1 or _has_command_modifier(key):
        return None
    if char == "\r":
        return "\n"
    return char if char.isprintable() or char in "\t\n" else None


def _is_backspace(key: Key) -> bool:
    return key.down and key.key == "backspace" and not _has_command_modifier(key)


def _is_case_key(key: Key) -> bool:
    return key.key in _CASE_KEYS or key.key.startswith(_CASE_KEY_PREFIX)


def _is_modifier_only(key: Key) -> bool:
    return key.key in {"ctrl", "ctrlright", "alt", "altright", "win", "winright"}


class TypingBurstRedactor:
    """Holds one typing burst at a time and releases it redacted; see the module docstring."""

    def __init__(
        self,
        detectors: Sequence[Detector] | None = None,
        *,
        gap_s: float = REDACTION_BURST_GAP_SECONDS,
        max_chars: int = MAX_BURST_CHARS,
        max_events: int = MAX_BURST_EVENTS,
    ) -> None:
        self.detectors: Sequence[Detector] = default_detectors() if detectors is None else detectors
        self.gap_s = gap_s
        self.max_chars = max_chars
        self.max_events = max_events
        # Keys whose press was dropped in an earlier burst and whose release has not come yet.
        self._dropped_held: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self._events: list[Event] = []
        self._owners: list[_Owner] = []
        self._cells: list[_Cell] = []  # the text as it stands
        self._erasure: _Erasure | None = None  # the backspace run in progress
        self._erasures: list[_Erasure] = []
        self._held: dict[str, list[int]] = {}  # key name → indices of its presses not yet released
        self._last_key_t: float | None = None
        self._overflowed = False
        self._first_typed: Key | None = None

    @property
    def open(self) -> bool:
        return bool(self._events)

    # --- input ---

    def feed(self, event: Event) -> list[Event]:
        """Take any recorder event; return the events that may be written now, in order."""
        out: list[Event] = []
        if isinstance(event, _BURST_ENDING_EVENTS):
            out.extend(self._close())
            out.append(event)
            return out
        if not isinstance(event, Key):
            # Frames and pointer paths carry no typed text; inside a burst they keep their place.
            if self.open:
                self._append(event, _Always(keep=True))
            else:
                out.append(event)
            return out
        if self.open and self._last_key_t is not None and event.t - self._last_key_t > self.gap_s:
            out.extend(self._close())
        out.extend(self._feed_key(event))
        return out

    def flush_if_quiet(self, now: float) -> list[Event]:
        """For the recorder's timer: end the burst if no key came for ``gap_s``."""
        if self.open and self._last_key_t is not None and now - self._last_key_t > self.gap_s:
            return self._close()
        return []

    def end_burst(self) -> RedactedBurst:
        """End the current burst and return what may be written of it."""
        if not self.open:
            return RedactedBurst("", [], [])
        self._finish_erasure()
        burst = self._overflow_result() if self._overflowed else self._result()
        self._reset()
        return burst

    def end_burst_as_password(self, since_t: float) -> PasswordCut:
        """End the burst, dropping every key from ``since_t`` on: it was typed into a password field
        (the caller writes the one ``<PASSWORD>`` marker). What was typed before ``since_t`` is redacted
        as the burst it would have been had it ended there; events without typed text (frames, pointer
        paths) are kept wherever they are, and so are releases of keys pressed (and kept) before."""
        if not self.open:
            return PasswordCut([], frozenset())
        cut = next((i for i, event in enumerate(self._events) if event.t >= since_t), len(self._events))
        before, after = self._events[:cut], self._events[cut:]
        self._reset()
        events: list[Event] = []
        for event in before:
            events.extend(self.feed(event))
        held_before = set(self._held)
        events.extend(self.end_burst().events)
        held_after: set[str] = set()
        for event in after:
            if not isinstance(event, Key):
                events.append(event)
            elif event.down:
                held_after.add(event.key)
            elif event.key in held_after:
                held_after.discard(event.key)
            elif event.key in held_before:
                held_before.discard(event.key)
                if event.key in self._dropped_held:
                    self._dropped_held.discard(event.key)
                else:
                    events.append(event)
            else:
                self._dropped_held.discard(event.key)  # its press was dropped in an earlier burst, or
                # came before this one: either way a key typed into the password field stays out
        return PasswordCut(events, frozenset(held_after))

    def _close(self) -> list[Event]:
        return self.end_burst().events if self.open else []

    def _feed_key(self, key: Key) -> list[Event]:
        if not key.down:
            return self._feed_release(key)
        char = _typed_char(key)
        if char is not None:
            self._type(key, char)
        elif _is_backspace(key):
            self._backspace(key)
        elif _is_case_key(key):
            self._append(key, _Changes(forward=True))
        elif _is_modifier_only(key):
            if not self.open:
                return [key]
            self._append(key, _Always(keep=True))
        else:
            # A key that does not type (arrows, delete, ctrl+c …) ends the burst.
            return [*self._close(), key]
        self._last_key_t = key.t
        self._check_bounds()
        return []

    def _feed_release(self, key: Key) -> list[Event]:
        presses = self._held.pop(key.key, [])
        if presses:
            self._append(key, _ReleaseOf(tuple(presses)))
            return []
        if key.key in self._dropped_held:
            self._dropped_held.discard(key.key)
            return []
        if _is_case_key(key) and self.open:
            self._append(key, _Changes(forward=False))
            return []
        if self.open:
            self._append(key, _Always(keep=True))
            return []
        return [key]

    def _append(self, event: Event, owner: _Owner) -> int:
        self._events.append(event)
        self._owners.append(owner)
        if isinstance(event, Key) and event.down:
            self._held.setdefault(event.key, []).append(len(self._events) - 1)
        return len(self._events) - 1

    def _type(self, key: Key, char: str) -> None:
        self._finish_erasure()
        if self._first_typed is None:
            self._first_typed = key
        cell = _Cell(char, down_index=len(self._events), position=len(self._cells))
        self._append(key, _TypedBy(cell))
        self._cells.append(cell)

    def _backspace(self, key: Key) -> None:
        if not self._cells:
            # Deletes text from before this burst, which we never saw: it reveals nothing.
            self._append(key, _Always(keep=True))
            return
        if self._erasure is None:
            self._erasure = _Erasure()
            self._erasures.append(self._erasure)
        cell = self._cells.pop()
        cell.erasure = self._erasure
        self._erasure.cells.append(cell)
        self._append(key, _ErasedBy(self._erasure))

    def _finish_erasure(self) -> None:
        """Read the erased characters in context; flag whatever in them is sensitive."""
        erasure, self._erasure = self._erasure, None
        if erasure is None or self._overflowed:
            return
        context = self._cells[-SNAPSHOT_CONTEXT_CHARS:]
        seen = context + erasure.cells[::-1]
        for match in find_sensitive("".join(cell.char for cell in seen), self.detectors):
            for cell in seen[match.start : match.end]:
                cell.flagged = cell.flagged or match.kind

    def _check_bounds(self) -> None:
        if self._overflowed:
            return
        if len(self._cells) > self.max_chars or len(self._events) > self.max_events:
            self._overflowed = True
            # Keep only what is always kept; every typed key of this burst is dropped from here on.
            always = [index for index, owner in enumerate(self._owners) if owner == _Always(True)]
            new_index = {old: new for new, old in enumerate(always)}
            for name, presses in self._held.items():
                if any(press not in new_index for press in presses):
                    self._dropped_held.add(name)
            self._held = {
                name: [new_index[press] for press in presses]
                for name, presses in self._held.items()
                if name not in self._dropped_held
            }
            self._events = [self._events[index] for index in always]
            self._owners = [self._owners[index] for index in always]
            self._cells, self._erasures, self._erasure = [], [], None

    # --- output ---

    def _overflow_result(self) -> RedactedBurst:
        first = self._first_typed
        assert first is not None
        marker = Marker(
            t=first.t, wall=first.wall, kind=REDACTED_MARKER_KIND, text=placeholder(OVERFLOW_KIND)
        )
        kept = [e for e, o in zip(self._events, self._owners, strict=True) if o == _Always(True)]
        events = sorted([marker, *kept], key=lambda event: event.t)
        return RedactedBurst(placeholder(OVERFLOW_KIND), events, [])

    def _spans(self, text: str) -> list[Match]:
        found = find_sensitive(text, self.detectors)
        flagged_runs: list[Match] = []
        for cell in self._cells:
            if cell.flagged is None:
                continue
            last = flagged_runs[-1] if flagged_runs else None
            if last is not None and last.end == cell.position and last.kind == cell.flagged:
                flagged_runs[-1] = Match(last.start, cell.position + 1, last.kind)
            else:
                flagged_runs.append(Match(cell.position, cell.position + 1, cell.flagged))
        return merge_overlapping([*found, *flagged_runs])

    def _result(self) -> RedactedBurst:
        text = "".join(cell.char for cell in self._cells)
        spans = self._spans(text)
        span_of_position: dict[int, Match] = {p: span for span in spans for p in range(span.start, span.end)}
        dropped_cells = {id(cell) for cell in self._cells if cell.position in span_of_position}
        for erasure in self._erasures:
            erasure.dropped = any(
                cell.flagged is not None or any(span.start <= cell.position <= span.end for span in spans)
                for cell in erasure.cells
            )
        keep = self._fates(dropped_cells)
        # A key still held at the end of the burst: its release, when it comes, follows its press.
        for name, presses in self._held.items():
            if not all(keep[press] for press in presses):
                self._dropped_held.add(name)
        markers_at = {self._cells[span.start].down_index: span for span in spans}
        events: list[Event] = []
        for index, event in enumerate(self._events):
            span = markers_at.get(index)
            if span is not None:
                events.append(
                    Marker(t=event.t, wall=event.wall, kind=REDACTED_MARKER_KIND, text=placeholder(span.kind))
                )
            if keep[index]:
                events.append(event)
        return RedactedBurst(replace_spans(text, spans), events, spans)

    def _fates(self, dropped_cells: set[int]) -> list[bool]:
        """Keep (True) or drop each held event."""
        typed_at = [index for index, owner in enumerate(self._owners) if isinstance(owner, _TypedBy)]
        keep: list[bool] = []
        for owner in self._owners:
            if isinstance(owner, _Always):
                keep.append(owner.keep)
            elif isinstance(owner, _TypedBy):
                cell = owner.cell
                erased_and_dropped = cell.erasure is not None and cell.erasure.dropped
                keep.append(id(cell) not in dropped_cells and not erased_and_dropped)
            elif isinstance(owner, _ErasedBy):
                keep.append(not owner.erasure.dropped)
            elif isinstance(owner, _ReleaseOf):
                # Presses come before their release, so their fate is already known.
                keep.append(all(keep[press] for press in owner.down_indices))
            else:
                keep.append(True)  # case keys: settled below, once every character's fate is known
        for index, owner in enumerate(self._owners):
            if isinstance(owner, _Changes):
                changed = _neighbour(typed_at, index, forward=owner.forward)
                keep[index] = keep[changed] if changed is not None else True
        return keep


def _neighbour(typed_at: list[int], index: int, *, forward: bool) -> int | None:
    """The next (forward) or previous character press around event ``index``; failing that, the other."""
    after = bisect.bisect_right(typed_at, index)
    next_press = typed_at[after] if after < len(typed_at) else None
    previous_press = typed_at[after - 1] if after > 0 else None
    if forward:
        return next_press if next_press is not None else previous_press
    return previous_press if previous_press is not None else next_press


__all__ = [
    "MAX_BURST_CHARS",
    "MAX_BURST_EVENTS",
    "OVERFLOW_KIND",
    "REDACTION_BURST_GAP_SECONDS",
    "PasswordCut",
    "RedactedBurst",
    "TypingBurstRedactor",
]
