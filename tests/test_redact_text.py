"""redact_text on whole strings, and TypingBurstRedactor on key events as the recorder sees them."""

from __future__ import annotations

from collections.abc import Sequence

from demotrace.model import Button, Event, FrameTaken, Key, Marker
from demotrace.protocol import REDACTED_MARKER_KIND
from demotrace.redact.detectors.base import Match
from demotrace.redact.text import merge_overlapping, placeholder, redact_text
from demotrace.redact.typing_burst import OVERFLOW_KIND, TypingBurstRedactor

CARD = "4111 1111 1111 1111"
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDn0rPk4n9r6Xq1Zx8Lw2T5v3Uy7Hm0Ns9Kd4Bf6Gc2Jw==\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
BACKSPACE = "\b"

# --- whole strings ---


def test_redact_text_replaces_each_match_with_its_kind() -> None:
    result = redact_text(f"card {CARD}, mail jo@example.com, ssn 123-45-6789.")
    assert result.text == "card <CREDIT_CARD>, mail <EMAIL>, ssn <US_SSN>."
    assert [m.kind for m in result.matches] == ["CREDIT_CARD", "EMAIL", "US_SSN"]


def test_plain_text_is_untouched() -> None:
    text = "Meeting moved to 3pm; see src/app/main.py and the Q3 report (page 12)."
    assert redact_text(text).text == text
    assert redact_text(text).matches == []


def test_overlapping_matches_merge_and_the_longest_names_them() -> None:
    merged = merge_overlapping([Match(0, 10, "PHONE"), Match(5, 30, "SECRET"), Match(40, 45, "EMAIL")])
    assert merged == [Match(0, 30, "SECRET"), Match(40, 45, "EMAIL")]


def test_equally_long_overlaps_go_to_the_more_specific_kind() -> None:
    assert merge_overlapping([Match(0, 20, "SECRET"), Match(0, 20, "API_KEY")]) == [Match(0, 20, "API_KEY")]


def test_jwt_is_one_jwt_not_a_secret() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    assert redact_text(f"Bearer {jwt}").text == "Bearer <JWT>"


# --- typing bursts ---


class Typist:
    """Builds the key events a user produces, 50 ms apart: each key down then up."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start
        self.events: list[Event] = []

    def _key(self, key: str, down: bool, char: str | None = None, modifiers: Sequence[str] = ()) -> None:
        self.t += 0.025
        self.events.append(
            Key(t=self.t, wall=1e9 + self.t, down=down, key=key, char=char, modifiers=list(modifiers))
        )

    def type(self, text: str) -> Typist:
        for char in text:
            if char == BACKSPACE:
                self._key("backspace", True)
                self._key("backspace", False)
                continue
            name = {" ": "space", "\n": "enter", "\t": "tab"}.get(char, char.lower())
            shifted = char.isupper()
            if shifted:
                self._key("shift", True)
            held = ["shift"] if shifted else []
            self._key(name, True, char, held)
            self._key(name, False, None, held)
            if shifted:
                self._key("shift", False)
        return self

    def click(self) -> Button:
        self.t += 0.1
        return Button(t=self.t, wall=1e9 + self.t, down=True, button="left", x=10, y=10)


def replay(events: Sequence[Event]) -> str:
    """Rebuild typed text the way the dataset does: characters append, backspace removes one unit, a
    redaction marker inserts its placeholder as one unit."""
    units: list[str] = []
    for event in events:
        if isinstance(event, Marker) and event.kind == REDACTED_MARKER_KIND:
            units.append(event.text)
        elif isinstance(event, Key) and event.down and event.key == "backspace":
            units.pop()
        elif isinstance(event, Key) and event.down and event.char is not None:
            units.append(event.char)
    return "".join(units)


def typed_chars(events: Sequence[Event]) -> str:
    return "".join(e.char for e in events if isinstance(e, Key) and e.down and e.char is not None)


def run_burst(text: str) -> tuple[TypingBurstRedactor, list[Event], Typist]:
    typist = Typist().type(text)
    redactor = TypingBurstRedactor()
    out: list[Event] = []
    for event in typist.events:
        out.extend(redactor.feed(event))
    return redactor, out, typist


def test_plain_typing_keeps_every_key() -> None:
    redactor, early, typist = run_burst("Hello world, see you at 5!\b?")
    assert early == []  # held until the burst ends
    burst = redactor.end_burst()
    assert burst.events == typist.events
    assert burst.text == "Hello world, see you at 5?"
    assert burst.matches == []


def test_card_typed_with_a_correction_is_redacted_and_no_digit_survives() -> None:
    # The user mistypes the last digit, erases it and goes on.
    redactor, _, _ = run_burst("pay 4111 1111 1111 1112\b1 now")
    burst = redactor.end_burst()
    assert burst.text == "pay <CREDIT_CARD> now"
    assert typed_chars(burst.events) == "pay  now"
    assert not any(isinstance(e, Key) and e.key == "backspace" for e in burst.events)
    assert replay(burst.events) == burst.text
    markers = [e for e in burst.events if isinstance(e, Marker)]
    assert [(m.kind, m.text) for m in markers] == [(REDACTED_MARKER_KIND, "<CREDIT_CARD>")]


def test_marker_sits_at_the_first_key_of_the_span() -> None:
    redactor, _, typist = run_burst(f"pay {CARD}")
    burst = redactor.end_burst()
    marker = next(e for e in burst.events if isinstance(e, Marker))
    first_digit = next(e for e in typist.events if isinstance(e, Key) and e.char == "4")
    assert marker.t == first_digit.t


def test_card_typed_then_erased_entirely_leaves_no_digit() -> None:
    erase = BACKSPACE * len(CARD)
    redactor, _, _ = run_burst(f"{CARD}{erase}never mind")
    burst = redactor.end_burst()
    assert burst.text == "never mind"
    assert typed_chars(burst.events) == "never mind"
    assert replay(burst.events) == "never mind"


def test_email_in_a_sentence() -> None:
    redactor, _, _ = run_burst("Write to Jane.Doe@example.org today")
    burst = redactor.end_burst()
    assert burst.text == "Write to <EMAIL> today"
    # The shift presses that capitalised "Jane" and "Doe" go with the letters; the one for "W" stays.
    kept = [e for e in burst.events if isinstance(e, Key)]
    assert sum(1 for e in kept if e.key == "shift" and e.down) == 1
    assert typed_chars(burst.events) == "Write to  today"
    assert replay(burst.events) == burst.text


def test_private_key_pasted_across_many_keys() -> None:
    redactor, _, typist = run_burst(f"here:\n{PEM}\nthanks")
    burst = redactor.end_burst()
    assert burst.text == "here:\n<PRIVATE_KEY>\nthanks"
    assert typed_chars(burst.events) == "here:\n\nthanks"
    assert len(typist.events) > 2 * len(PEM)  # a key down and up per character, at least
    assert replay(burst.events) == burst.text


def test_a_non_typing_action_ends_the_burst_and_passes_through() -> None:
    typist = Typist().type(f"card {CARD}")
    redactor = TypingBurstRedactor()
    out: list[Event] = []
    for event in typist.events:
        out.extend(redactor.feed(event))
    click = typist.click()
    out.extend(redactor.feed(click))
    assert out[-1] is click
    assert replay(out) == "card <CREDIT_CARD>"
    assert not redactor.open


def test_a_pause_ends_the_burst() -> None:
    typist = Typist().type("first")
    typist.t += 60
    typist.type("second")
    redactor = TypingBurstRedactor(gap_s=10)
    out: list[Event] = []
    for event in typist.events:
        out.extend(redactor.feed(event))
    assert typed_chars(out) == "first"
    assert redactor.end_burst().text == "second"


def test_frames_inside_a_burst_keep_their_place() -> None:
    typist = Typist().type("ab")
    frame = FrameTaken(t=typist.t, wall=0.0, frame_id="f", left=0, top=0, width=1, height=1, trigger="key")
    typist.events.insert(2, frame)
    redactor = TypingBurstRedactor()
    for event in typist.events:
        assert redactor.feed(event) == []
    assert redactor.end_burst().events == typist.events


def test_release_of_a_dropped_key_after_the_burst_is_dropped_too() -> None:
    typist = Typist().type(f"x {CARD}")
    last_up = typist.events.pop()  # the user still holds the final "1" when clicking
    redactor = TypingBurstRedactor()
    for event in typist.events:
        redactor.feed(event)
    redactor.feed(typist.click())
    assert redactor.feed(last_up) == []


def test_overlong_burst_is_fully_redacted_within_bounds() -> None:
    small = TypingBurstRedactor(max_chars=50)
    typist = Typist().type("word " * 20)
    for event in typist.events:
        small.feed(event)
    burst = small.end_burst()
    assert burst.text == placeholder(OVERFLOW_KIND)
    assert typed_chars(burst.events) == ""
    assert [e.text for e in burst.events if isinstance(e, Marker)] == ["<REDACTED>"]


# --- a burst cut short as a password (the recorder's masked-echo check) ---


def test_a_burst_cut_as_a_password_keeps_no_key_of_it() -> None:
    typist = Typist().type("hunter2-Secret")
    frame = FrameTaken(t=typist.t, wall=0.0, frame_id="f", left=0, top=0, width=1, height=1, trigger="key")
    typist.events.insert(3, frame)
    redactor = TypingBurstRedactor()
    for event in typist.events:
        redactor.feed(event)
    cut = redactor.end_burst_as_password(typist.events[0].t)
    assert cut.events == [frame]  # pixels stay; not one key, so not even how many
    assert cut.held == frozenset()
    assert not redactor.open


def test_what_was_typed_before_the_password_is_redacted_as_usual() -> None:
    typist = Typist().type(f"jane {CARD}\t")
    since = typist.t + 0.001
    typist.type("Hunter2")
    last_up = typist.events.pop()  # "2" is still held when the check answers
    redactor = TypingBurstRedactor()
    for event in typist.events:
        redactor.feed(event)
    cut = redactor.end_burst_as_password(since)
    assert replay(cut.events) == "jane <CREDIT_CARD>\t"
    assert all(e.t < since for e in cut.events if isinstance(e, Key))
    assert cut.held == frozenset({"2"})
    # Nothing of the password leaks through later releases either.
    assert redactor.feed(last_up) == [last_up]  # the recorder drops it (cut.held); the redactor is done


def test_a_key_held_across_the_cut_keeps_its_release() -> None:
    typist = Typist()
    typist._key("shift", True)
    typist._key("j", True, "J", ["shift"])
    typist._key("j", False, None, ["shift"])
    since = typist.t + 0.001
    typist.type("pw9x")
    typist._key("shift", False)
    redactor = TypingBurstRedactor()
    for event in typist.events:
        redactor.feed(event)
    cut = redactor.end_burst_as_password(since)
    assert [(e.key, e.down) for e in cut.events if isinstance(e, Key)] == [
        ("shift", True),
        ("j", True),
        ("j", False),
        ("shift", False),
    ]
