"""The person's own login, full name and host name: found as whole tokens in typed and screen text."""

from __future__ import annotations

import getpass
import socket

from demotrace.redact.detectors import all_detectors, screen_detectors
from demotrace.redact.detectors.own_identity import Identity, KnownValueDetector, this_identity
from demotrace.redact.text import redact_text

JANE = Identity(logins=("jdoe",), full_names=("Jane Q. Doe",), hosts=("lab-07", "lab-07.corp.example"))


def redacted(text: str, identity: Identity = JANE) -> str:
    return redact_text(text, all_detectors(identity=identity)).text


def test_login_full_name_and_host_become_placeholders() -> None:
    assert redacted("ssh jdoe@lab-07") == "ssh <USER>@<HOST>"
    assert redacted("jdoe@lab-07:~$ ls /home/jdoe") == "<USER>@<HOST>:~$ ls /home/<USER>"
    assert redacted("Notes of Jane  Q. Doe - Editor") == "Notes of <USER> - Editor"
    assert redacted("scp f lab-07.corp.example:") == "scp f <HOST>:"
    assert redacted("JDOE on LAB-07") == "<USER> on <HOST>"


def test_only_whole_tokens_match() -> None:
    for text in ("jdoes", "xjdoe", "jdoe2", "lab-071", "Jane went home", "Doe"):
        assert redacted(text) == text, text


def test_names_every_machine_has_and_single_letters_are_left_out() -> None:
    detector = KnownValueDetector("USER", [])
    assert detector.find("anything") == []
    identity = Identity(logins=("a",), hosts=("localhost",))
    assert redacted("a localhost", identity) == "a localhost"


def test_this_identity_is_the_account_running_the_process() -> None:
    identity = this_identity()
    assert getpass.getuser() in identity.logins
    assert socket.gethostname().split(".")[0] in identity.hosts
    assert "localhost" not in identity.hosts
    assert any(d.kind == "USER" for d in all_detectors()) and any(
        d.kind == "HOST" for d in screen_detectors()
    )


def test_on_screen_a_login_glued_to_what_ocr_misread_is_still_found() -> None:
    def found(text: str) -> list[str]:
        detectors = screen_detectors(identity=JANE)
        return [text[m.start : m.end] for d in detectors if d.kind in ("USER", "HOST") for m in d.find(text)]

    assert found("ssh jdoeGlab-07|") == ["jdoe", "lab-07"]  # "@" read as "G", the cursor as "|"
    assert found("labrador pivot") == []
    assert redacted("jdoeGlab") == "jdoeGlab"  # typed text is exact: no OCR there
