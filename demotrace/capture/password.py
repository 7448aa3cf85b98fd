"""Password bursts as a pure state machine: which typed keys are a password, and the masked-echo wait.

- In a window whose title matches ``password_title_patterns`` every typing burst is a password: none of
  its keys is written, only one ``Marker(kind="redacted", text="<PASSWORD>")`` at its first key. The
  platform's accessibility probe (AT-SPI, when present) and any ``password_probes`` can flag a burst in
  other windows too; only a burst's first key asks them.
- Masked echo (any other window): at the first printable key typed into a field (after a click, a tab or
  a new burst) the echo thread grabs the area where typing lands - the focused window, or a band of
  ±``ECHO_BAND_HALF_HEIGHT`` px around the last click in it; once ``ECHO_FIRST_CHECK_KEYS`` keys went in
  it grabs the same area again after ``ECHO_RENDER_SECONDS`` and reads both with ``masked_echo``: a row
  of identical glyphs (``*``, ``•``, ``●`` …) as many as the keys typed, which could not be those keys
  drawn as text, is a password field. Until the verdict arrives (at most
  ``ECHO_VERDICT_TIMEOUT_SECONDS``; none by then counts as a password) the processing thread holds every
  new message, so the burst cannot be released before it. A password verdict cuts the held burst at the
  field's first key (``end_burst_as_password``): no key from there on is written, one ``<PASSWORD>``
  marker stands at that key, and the rest of the burst is dropped as in a password window. Undecided:
  another look after ``ECHO_RECHECK_KEYS`` more keys, at most ``ECHO_MAX_CHECKS`` per field.

:class:`PasswordBursts` is fed keys, clicks and verdicts with their stamps and the time now; it returns
the markers to write and the looks to ask the echo thread for. The typed-text redactor stays with the
processor, which tells this machine whether its burst is open and where it started. No X, no threads, no
clock reads (the probes it is handed may ask the platform).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from demotrace.capture.masked_echo import EchoReading
from demotrace.capture.messages import Clock, EchoLook
from demotrace.capture.platform import WindowInfo
from demotrace.model import Marker
from demotrace.protocol import REDACTED_MARKER_KIND
from demotrace.redact.text import placeholder

log = logging.getLogger(__name__)

PASSWORD_KIND = "PASSWORD"
# Masked echo: the first look once this many printable keys went into one field (fewer cannot be told
# apart from text), another after this many more if it could not tell, at most this many per field.
ECHO_FIRST_CHECK_KEYS = 4
ECHO_RECHECK_KEYS = 3
ECHO_MAX_CHECKS = 3
ECHO_RENDER_SECONDS = 0.05  # the application draws the echo of the last key meanwhile
# How long the processing thread holds everything after a look, waiting for its verdict. No answer by
# then: the field is taken for a password (nothing that may be one is written). A look takes ~0.06 s;
# the margin is for a busy machine, where a thread may wait that long for a core.
ECHO_VERDICT_TIMEOUT_SECONDS = 1.0
ECHO_BAND_HALF_HEIGHT = 60  # the area looked at: this far above and below the click into the field

# Asks whether the focused widget takes a password: True, False, or None (cannot tell). Called on the
# processing thread at the first key of a typing burst, with the focused window.
PasswordProbe = Callable[[WindowInfo | None], bool | None]


@dataclass(frozen=True)
class KeyFate:
    """What becomes of one key: written, or dropped as part of a password burst; ``marker`` is the
    burst's one ``<PASSWORD>`` marker when this key starts it."""

    dropped: bool
    marker: Marker | None = None


WRITTEN = KeyFate(False)
DROPPED = KeyFate(True)


@dataclass
class EchoField:
    """The printable keys typed into one field so far, as the masked-echo check follows them."""

    check_id: int
    burst_start_t: float  # the typing burst (the redactor's) it belongs to
    start_ns: int  # its first key (a shift before the first character counts)
    area: dict[str, int]
    text: list[str]
    next_check: int = ECHO_FIRST_CHECK_KEYS
    checks: int = 0
    settled: bool = False  # no more looks: the echo is text, or it could not tell often enough


class PasswordBursts:
    """Password bursts and the masked-echo check of one recording; touched by the processing thread only."""

    def __init__(
        self,
        clock: Clock,
        gap_s: float,
        screen_size: tuple[int, int],
        probes: Sequence[PasswordProbe] = (),
        *,
        echo: bool = True,
    ) -> None:
        self._clock = clock
        self._gap_s = gap_s  # the redactor's: keys further apart than this are another burst
        self._screen_width, self._screen_height = screen_size
        self._probes = probes
        self._echo = echo
        self.in_password_window = False  # the focused window's title says so (the processor sets it)
        self._key_t: float | None = None  # last key of a password burst in progress
        # Masked echo: the field being typed into, the key that may start the next one, the look whose
        # verdict everything waits for (check id, perf_counter deadline).
        self._field: EchoField | None = None
        self._lead: tuple[float, int] | None = None  # (burst start t, ns) of a key before a field's first
        self._check_ids = 0
        self._waiting: tuple[int, float] | None = None
        self._last_click: tuple[int, int, int] | None = None  # x, y, window id

    def _password_marker(self, ns: int) -> Marker:
        clock = self._clock
        return Marker(
            t=clock.t(ns), wall=clock.wall(ns), kind=REDACTED_MARKER_KIND, text=placeholder(PASSWORD_KIND)
        )

    # -- password bursts -----------------------------------------------------------------------

    def end(self) -> None:
        """Something other than typing happened (a click, a scroll, a window or a span): the password
        burst in progress, if any, is over."""
        self._key_t = None

    def key(
        self, down: bool, typed: bool, ns: int, *, burst_open: bool, window: WindowInfo | None
    ) -> KeyFate:
        """Is this key part of a password burst (never written)? ``typed``: it types a character;
        ``burst_open``: the redactor holds a typing burst already (only a burst's first key probes)."""
        t = self._clock.t(ns)
        in_burst = self._key_t is not None and t - self._key_t <= self._gap_s
        marker = None
        if not in_burst:
            self._key_t = None
            if not down:
                return DROPPED if self.in_password_window else WRITTEN
            if not (self.in_password_window or (typed and self._probe(burst_open, window))):
                return WRITTEN
            marker = self._password_marker(ns)
        if down:
            self._key_t = t
        return KeyFate(True, marker)

    def _probe(self, burst_open: bool, window: WindowInfo | None) -> bool:
        if burst_open:
            return False  # only the first key of a burst asks; the rest follow it
        return any(probe(window) for probe in self._probes)

    # -- masked echo ---------------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """A look's verdict is awaited: every new message must wait for it."""
        return self._waiting is not None

    @property
    def deadline(self) -> float | None:
        """When the awaited verdict counts as a password (perf_counter seconds), if one is awaited."""
        return None if self._waiting is None else self._waiting[1]

    def clicked(self, x: int, y: int, window_id: int) -> None:
        """A press was written: the field typed into next is likely where it landed."""
        self._last_click = (x, y, window_id)

    def _area(self, window: WindowInfo | None) -> dict[str, int] | None:
        """Where the typing lands: the focused window, narrowed to a band around the last click if it
        landed in that window (the click into the field)."""
        if window is None:
            return None
        left, top = max(window.x, 0), max(window.y, 0)
        right = min(window.x + window.width, self._screen_width)
        bottom = min(window.y + window.height, self._screen_height)
        click = self._last_click
        if click is not None and click[2] == window.window_id and top <= click[1] < bottom:
            top = max(top, click[1] - ECHO_BAND_HALF_HEIGHT)
            bottom = min(bottom, click[1] + ECHO_BAND_HALF_HEIGHT)
        if right - left < 8 or bottom - top < 8:
            return None
        return {"left": left, "top": top, "width": right - left, "height": bottom - top}

    def watch(
        self,
        key: str,
        char: str | None,
        ns: int,
        *,
        burst_start_t: float | None,
        window: WindowInfo | None,
        now: float,
    ) -> list[EchoLook]:
        """Follow a key press that went into the held burst (started at ``burst_start_t``): start a field
        at its first printable key (a look at the area), and look at the echo once enough keys went in
        (everything waits for that verdict, until ``now`` + ``ECHO_VERDICT_TIMEOUT_SECONDS``)."""
        if not self._echo or burst_start_t is None:
            self._field = None
            return []
        looks: list[EchoLook] = []
        field = self._field
        if field is not None and field.burst_start_t != burst_start_t:
            field = self._field = None
        if field is None and (self._lead is None or self._lead[0] != burst_start_t):
            self._lead = (burst_start_t, ns)
        if char is not None and len(char) == 1 and char.isprintable():
            if field is None:
                area = self._area(window)
                if area is None:
                    return looks
                self._check_ids += 1
                start_ns = self._lead[1] if self._lead is not None else ns
                field = self._field = EchoField(self._check_ids, burst_start_t, start_ns, area, [])
                self._lead = None
                looks.append(EchoLook(field.check_id, area, None))
            field.text.append(char)
            if not field.settled and len(field.text) >= field.next_check:
                typed = "".join(field.text)
                looks.append(EchoLook(field.check_id, field.area, typed, now + ECHO_RENDER_SECONDS))
                self._waiting = (field.check_id, now + ECHO_VERDICT_TIMEOUT_SECONDS)
        elif key == "backspace":
            if field is not None and field.text:
                field.text.pop()
        elif char is not None:  # tab, enter: what follows may go to another field
            self._field = self._lead = None
        return looks

    def verdict(self, check_id: int, reading: EchoReading, last_key_t: float | None) -> Marker | None:
        """A look's verdict. If the field takes a password: the ``<PASSWORD>`` marker at its first key,
        where the processor cuts the held burst (``end_burst_as_password(marker.t)``); the rest of the
        burst (its last key was at ``last_key_t``) is dropped as a password burst. Else None."""
        waiting = self._waiting
        if waiting is None or waiting[0] != check_id:
            return None  # too late: the timeout settled it
        self._waiting = None
        field = self._field
        if field is None or field.check_id != check_id:
            return None
        if reading.verdict == "masked":
            self._key_t = last_key_t
            self._field = None
            return self._password_marker(field.start_ns)
        if reading.verdict == "text":
            field.settled = True
        else:
            field.checks += 1
            field.settled = field.checks >= ECHO_MAX_CHECKS
            field.next_check = len(field.text) + ECHO_RECHECK_KEYS
        return None

    def overdue(self, now: float, last_key_t: float | None) -> Marker | None:
        """No verdict by its deadline counts as a password: like ``verdict`` with a masked reading."""
        waiting = self._waiting
        if waiting is None or now < waiting[1]:
            return None
        log.warning("no masked-echo verdict in time: the typing is kept out as a password")
        return self.verdict(waiting[0], EchoReading("masked", 0, "no verdict in time"), last_key_t)
