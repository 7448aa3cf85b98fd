"""The screen-only lenient detectors (text read by OCR): OCR's slips found, ordinary screen text passes."""

from __future__ import annotations

import pytest

from demotrace.redact.detectors import all_detectors, screen_detectors
from demotrace.redact.detectors.high_entropy import HighEntropyDetector
from demotrace.redact.detectors.iban import IbanDetector
from demotrace.redact.detectors.lenient.api_key import LenientApiKeyDetector
from demotrace.redact.detectors.lenient.digit_run import DigitRunDetector
from demotrace.redact.detectors.lenient.email import LenientEmailDetector
from demotrace.redact.detectors.lenient.iban import LenientIbanDetector
from demotrace.redact.detectors.lenient.secret import ScreenSecretDetector
from demotrace.redact.detectors.own_identity import Identity
from demotrace.redact.text import find_sensitive, redact_text
from tests.test_detectors import found

# --- screen-only leniency (text read by OCR) ---

# Ordinary screen text that no screen detector may flag: UI words, window titles, dates and times,
# short numbers, versions, a shell prompt with its path, identifiers and file names.
ORDINARY_SCREEN_TEXT = [
    "demotrace demo form",
    "demo terminal",
    "Name Email Notes Save Clear Sign in",
    "Status clicked 3 times",
    "Item 012",
    "Page 3 of 12",
    "Weekly review on 2024-03-15 at 10:30",
    "2024-01-15 12:30:45",
    "Fri Nov 27 16:10:57 UTC 2026",
    "15-01-2024",
    "12345678",
    "Total 1,234,567.89",
    "Budget 1,250.00 EUR, room 4B, ticket 4521",
    "Version 3.11.4 build 20240115",
    "Linux 6.1.0-18-amd64",
    "root@vm:/work/wt-ocr-recall# echo hello",
    "root@ym3/work/wt-ocr-recal1#",
    "/home/alice/project-2024/src/main.py",
    "getUserAccountSettings",
    "IMG_20240115_093012.jpg",
    "550e8400-e29b-41d4-a716-446655440000",
    "sk-learn-tutorial-notebooks",
    "ghost of the opera",
    "DE44 meeting notes for 2024",
    "ISO 8601",
    "salt & pepper.txt",
    "commit 7fb45b4",
]


def screen_found(text: str) -> list[tuple[str, str]]:
    # No identity: these texts are ordinary for anyone ("root@vm" is the test machine's own login and
    # host, covered on its own screen; see test_own_identity.py).
    detectors = screen_detectors(identity=Identity())
    return [(text[m.start : m.end], m.kind) for m in find_sensitive(text, detectors)]


@pytest.mark.parametrize("text", ORDINARY_SCREEN_TEXT)
def test_ordinary_screen_text_is_not_flagged(text: str) -> None:
    assert screen_found(text) == []


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 33",  # checksum broken by a misread digit
        "6882 WEST 1234 5698 7654 32",  # "GB" read as "68"
        "G882WESTl2345698765432",  # compact, "B" as "8", "1" as "l"
        "DE89 37O4 OO44 O532 O13O OO",  # zeros read as O
        "NL91 ABNA 0417 1643 0",  # a character lost
        "FR14 2004 1010 0505 0001 3M02 6066",  # a character doubled
    ],
)
def test_lenient_iban_by_shape_despite_ocr_slips(iban: str) -> None:
    assert found(LenientIbanDetector(), f"pay to {iban} today") == [iban]
    assert found(IbanDetector(), f"pay to {iban} today") == [] or iban.startswith(
        "GB82 WEST 1234 5698 7654 32"
    )


@pytest.mark.parametrize(
    "near_miss",
    ["GB82 alone", "DE44 meeting notes for 2024", "ES20 24 annual report", "XX12 3456 7890 1234 5678"],
)
def test_lenient_iban_near_miss_ignored(near_miss: str) -> None:
    assert found(LenientIbanDetector(), near_miss) == []


@pytest.mark.parametrize(
    "email",
    [
        "rowena.okafor©example.net",
        "rowena.okafor® example.net",
        "rowena.okafor @example.net",
        "a.b@mail.example.co.uk",
    ],
)
def test_lenient_email_with_a_misread_at_sign(email: str) -> None:
    assert found(LenientEmailDetector(), f"mail {email} now") == [email]


@pytest.mark.parametrize(
    "near_miss", ["salt & pepper.txt", "Tom © 2024", "rowena okafor at example dot net", "root@localhost"]
)
def test_lenient_email_near_miss_ignored(near_miss: str) -> None:
    assert found(LenientEmailDetector(), near_miss) == []


@pytest.mark.parametrize(
    "key",
    [
        "ghp R7k2Qm9Xv4Lp8Zt3Wn6Yb1Hc5Jd0Fs2Ga7Ex",  # "_" read as a space
        "qhp_R7k2Qm9Xv4Lp8Zt3",  # "g" read as "q", the rest scrolled out of view
        "AKlAIOSFODNN7EXAMPLE",  # "I" read as "l"
        "4KIA1234567890ABCDEF",
        "xoxb 12345678901-abcDEF123456",
        "AIza5yD-9tSrke72PouQMnMX7agd",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ],
)
def test_lenient_api_key_prefix_with_confusable_characters(key: str) -> None:
    assert found(LenientApiKeyDetector(), f"key {key} here") == [key]


@pytest.mark.parametrize(
    "near_miss",
    ["sk-learn-tutorial-notebooks", "ghost of the opera", "AKIA", "ghp_short1", "xoxb-conference-room"],
)
def test_lenient_api_key_near_miss_ignored(near_miss: str) -> None:
    assert found(LenientApiKeyDetector(), near_miss) == []


@pytest.mark.parametrize(
    "token",
    [
        "v4Lp8Zt3Wn6Yb1Hc5",  # the visible tail of a key in a text box scrolled sideways
        "Qm3vT8xKd2LpW9sZr4NfY7",
        "k9/Zq2Xw7Lm4Rt8Vb3Nc",  # base64 with a "/": its long part is random
    ],
)
def test_screen_secret_from_twelve_characters(token: str) -> None:
    assert found(ScreenSecretDetector(), f"see {token} there") == [token]
    if len(token) < 20:
        assert found(HighEntropyDetector(), f"see {token} there") == []  # typed text wants 20 characters


@pytest.mark.parametrize(
    "near_miss",
    ["root@vm:/work/wt-ocr-recall#", "/home/alice/project-2024/src", "Linux 6.1.0-18-amd64",
     "IMG_20240115.jpg", "getUserAccountSettings", "550e8400-e29b-41d4-a716-446655440000", "Jd0Fs2Ga7Ex"],
)  # fmt: skip
def test_screen_secret_near_miss_ignored(near_miss: str) -> None:
    assert found(ScreenSecretDetector(), near_miss) == []


@pytest.mark.parametrize(
    "run",
    [
        "34 5698 7654 32",  # the tail of an IBAN in a scrolled field
        "08 1746 2217 99",
        "0817462217",
        "O8 l746 2217 99",  # look-alikes inside the run
        "123-456-789",
    ],
)
def test_long_digit_runs_are_covered(run: str) -> None:
    assert found(DigitRunDetector(), f"tail {run} visible") == [run]


@pytest.mark.parametrize(
    "near_miss",
    ["12345678", "2024-01-15 12:30:45", "15-01-2024", "Fri Nov 27 16:10:57 UTC 2026", "3.11.4 20240115",
     "IMG_20240115_093012.jpg", "a716-446655440000", "1,234,567.89", "lOOO 123456"],
)  # fmt: skip
def test_digit_run_near_miss_ignored(near_miss: str) -> None:
    assert found(DigitRunDetector(), near_miss) == []


def test_screen_detectors_are_a_separate_set_typed_text_keeps_its_own() -> None:
    typed = {type(detector) for detector in all_detectors()}
    screen = {type(detector) for detector in screen_detectors()}
    lenient = {
        LenientIbanDetector,
        LenientEmailDetector,
        LenientApiKeyDetector,
        ScreenSecretDetector,
        DigitRunDetector,
    }
    assert lenient <= screen and not lenient & typed
    assert HighEntropyDetector not in screen  # it reads a shell prompt's path as a secret
    # Typed text is judged as before: a checksum-failing IBAN or a digit run is not redacted there.
    assert redact_text("IBAN GB82 WEST 1234 5698 7654 33").matches == []
    assert redact_text("tail 34 5698 7654 32").matches == []
