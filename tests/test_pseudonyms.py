"""No user name, host name, device id or session id reaches any output; ids become keyed pseudonyms."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import socket
import stat
from pathlib import Path

import pytest
from dataset_samples import Recording, recording

from demotrace.dataset import privacy
from demotrace.dataset.build import build_dataset
from demotrace.dataset.privacy import (
    KnownNames,
    PseudonymKeyError,
    Pseudonyms,
    TextScrubber,
    default_key_path,
    load_or_create_key,
)

USER = "zoe.quintero"
FULL_NAME = "Zoe Quintero"
HOST = "ws-7781-berlin"
DEVICE = "dev-4c1b9e77aa"
SESSION = "sess-91f0c2"
OTHER_DEVICE = "dev-0d2f55e1bc"


@pytest.fixture()
def this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test's user and host the building machine's, as getpass and socket report them."""
    monkeypatch.setattr(getpass, "getuser", lambda: USER)
    monkeypatch.setattr(socket, "gethostname", lambda: f"{HOST}.corp.example")
    monkeypatch.setattr(privacy, "_full_name_of", lambda user: FULL_NAME if user == USER else "")


def identifying_recording() -> Recording:
    first = recording(
        SESSION,
        DEVICE,
        app="XTerm",
        title=f"{USER}@{HOST}: ~/notes ({DEVICE})",
        text=f"ssh {USER}@{HOST} {DEVICE} {SESSION}",
        task=f"Help {FULL_NAME} on {HOST.upper()}",
    )
    second = recording(
        "sess-other",
        OTHER_DEVICE,
        start=400.0,
        app=f"Console-{HOST}",
        title=f"/home/{USER}/report.txt - {FULL_NAME} - mail {USER}@example.org",
        text=f"cd /home/{USER}",
        image_format="WEBP",
    )
    return first.add(second)


def every_output_file(out: Path) -> list[Path]:
    return sorted(path for path in out.rglob("*") if path.is_file())


def test_no_output_file_contains_a_name_or_raw_id(tmp_path: Path, this_machine: None) -> None:
    sample = identifying_recording()
    out = tmp_path / "out"
    summary = build_dataset(sample.batches, sample.load_frame, out)
    assert summary.episodes == 2 and summary.steps == 8
    files = every_output_file(out)
    kinds = {path.suffix for path in files}
    assert {".jsonl", ".parquet", ".tar", ".html", ".json", ".png", ".webp"} <= kinds
    secrets = [USER, FULL_NAME, HOST, DEVICE, OTHER_DEVICE, SESSION, "sess-other"]
    for path in files:
        data = path.read_bytes().lower()
        for secret in secrets:
            assert secret.lower().encode() not in data, f"{secret!r} found in {path.relative_to(out)}"
    # The scrubbed text says what was there, in the viewer as everywhere.
    page = (out / "index.html").read_text()
    assert "&lt;USER&gt;@&lt;HOST&gt;: ~/notes (&lt;DEVICE&gt;)" in page
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["instruction"] == "Help <USER> on <HOST>"
    typed = [step["action_detail"]["text"] for step in first["traj"] if step["value"]["action"] == "type"]
    assert typed == ["ssh <USER>@<HOST> <DEVICE> <SESSION>"]
    titles = {step["value"]["window"] for step in second["traj"]}
    # The email goes whole to the redactor's placeholder before the names are scrubbed.
    assert titles == {"/home/<USER>/report.txt - <USER> - mail <EMAIL>"}
    assert {step["value"]["app"] for step in second["traj"]} == {"Console-<HOST>"}


def test_ids_are_hmac_sha256_pseudonyms_under_the_dataset_key(tmp_path: Path) -> None:
    sample = identifying_recording()
    out = tmp_path / "out"
    build_dataset(sample.batches, sample.load_frame, out)
    key_file = default_key_path(out)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    assert len(key) == 32

    def expected(kind: str, value: str) -> str:
        return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:32]

    first = json.loads((out / "trajectories.jsonl").read_text().splitlines()[0])
    assert first["session_id"] == expected("session", SESSION)
    assert first["device_id"] == expected("device", DEVICE)
    assert first["task_id"] == f"{expected('session', SESSION)}-0000"
    assert first["traj"][0]["image"] == f"images/{expected('frame', f'{SESSION}-{DEVICE}-frame-0')}.png"

    # Rebuilding the same folder reuses its key: the same pseudonyms.
    build_dataset(sample.batches, sample.load_frame, out)
    again = json.loads((out / "trajectories.jsonl").read_text().splitlines()[0])
    assert again["task_id"] == first["task_id"]


def test_a_key_given_by_the_caller_is_used_and_never_written(tmp_path: Path) -> None:
    sample = identifying_recording()
    key = bytes(range(32))
    summary = build_dataset(sample.batches, sample.load_frame, tmp_path / "a", pseudonym_key=key)
    assert not default_key_path(tmp_path / "a").exists()
    assert summary.pseudonym_key_path == ""
    first = json.loads((tmp_path / "a" / "trajectories.jsonl").read_text().splitlines()[0])
    assert first["device_id"] == Pseudonyms(key).device(DEVICE)
    # Another dataset, another key: its pseudonyms cannot be joined with the first one's.
    build_dataset(sample.batches, sample.load_frame, tmp_path / "b")
    other = json.loads((tmp_path / "b" / "trajectories.jsonl").read_text().splitlines()[0])
    assert other["device_id"] != first["device_id"]


def test_a_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("not hex\n")
    with pytest.raises(PseudonymKeyError):
        load_or_create_key(tmp_path / "key")
    (tmp_path / "key").write_text("abcd\n")
    with pytest.raises(PseudonymKeyError, match="shorter"):
        load_or_create_key(tmp_path / "key")
    with pytest.raises(PseudonymKeyError):
        build_dataset([], lambda _: None, tmp_path / "out", pseudonym_key=b"short")


def test_scrubber_replaces_whole_tokens_case_insensitively() -> None:
    scrub = TextScrubber(KnownNames(user_names=("ann",), host_names=("vm", "vm.lan")))
    assert scrub("ann@vm: ~ (ANN on vm.lan)") == "<USER>@<HOST>: ~ (<USER> on <HOST>)"
    # Not inside longer words: "annual", "vmware", "planning" stay as they are.
    assert scrub("annual vmware planning") == "annual vmware planning"
    assert TextScrubber(KnownNames(user_names=("x",)))("x marks") == "x marks"  # too short to scrub


def test_local_names_are_this_machines_user_and_host(this_machine: None) -> None:
    names = privacy.local_names()
    assert names.user_names == (USER, FULL_NAME)
    assert names.host_names == (f"{HOST}.corp.example", HOST)


def test_without_the_redactor_names_are_still_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback when demotrace.redact is absent: names only, no detectors."""
    monkeypatch.setattr(privacy, "_redact_detected", None)
    scrub = TextScrubber(KnownNames(user_names=(USER,), host_names=(HOST,)))
    assert privacy.redact_and_scrub(f"{USER}@{HOST} x@example.org", scrub) == "<USER>@<HOST> x@example.org"


def test_the_redactor_is_wired_when_present() -> None:
    pytest.importorskip("demotrace.redact")
    assert privacy._redact_detected is not None
    scrub = TextScrubber(KnownNames())
    assert privacy.redact_and_scrub("Inbox - someone@example.org", scrub) == "Inbox - <EMAIL>"
