"""The notice on a real device: a real collector, a real `demotrace record` on Xvfb typing into an xterm.

Nothing is recorded before the person runs `demotrace notice --accept`; recording starts after it; a fleet
policy change that widens capture stops recording until accepted again, a narrowing does not; each
acceptance is on the collector (admin API and audit log).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from test_privacy_e2e import typed_text

from demotrace.collector.app import create_app
from demotrace.collector.exemptions import render_policy_toml
from demotrace.collector.reader import CollectorReader
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import start_recorder, stop_process, user_dirs
from demotrace.demo.script import TERMINAL_ARGV, TERMINAL_CLASS, find_window
from demotrace.demo.xdriver import XDriver
from demotrace.device.control_client import ControlClient
from demotrace.device.spool import SPOOL_FILE, SpoolBacklogReader
from demotrace.notice import notice_digest
from demotrace.policy import CapturePolicy
from demotrace.protocol import ADMIN_AUDIT_PATH, ADMIN_NOTICE_ACKS_PATH, ADMIN_POLICY_PATH

pytestmark = pytest.mark.x11

ADMIN = "notice-x11-admin-token-0123456789"
FLEET = CapturePolicy(mode="allowlist", allow_apps=[TERMINAL_CLASS], refresh_seconds=1)
WIDER = CapturePolicy(mode="allowlist", allow_apps=[TERMINAL_CLASS, "gimp"], refresh_seconds=1)


@pytest.fixture()
def terminal(desktop: VirtualDesktop) -> Iterator[None]:
    xterm = desktop.spawn(TERMINAL_ARGV)
    deadline = time.monotonic() + 20
    while find_window(desktop.display, TERMINAL_CLASS) is None:
        assert time.monotonic() < deadline, "the xterm did not map"
        time.sleep(0.1)
    yield
    xterm.terminate()
    xterm.wait(10)


def set_fleet_policy(url: str, policy: CapturePolicy, confirm_widening: bool) -> dict[str, object]:
    answer = httpx.put(
        f"{url}{ADMIN_POLICY_PATH}",
        params={"confirm_widening": str(confirm_widening).lower()},
        content=render_policy_toml(policy),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/toml"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def type_word(display: str, word: str) -> None:
    with XDriver(display, seed=5) as driver:
        driver.click(1200, 300)
        driver.type_text(f"echo {word}")
        driver.press("Return")
    time.sleep(1.0)  # the recorder's RECORD connection delivers the last keys


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def spool_records(spool: Path) -> int:
    if not (spool / SPOOL_FILE).exists():
        return 0
    reader = SpoolBacklogReader(spool)
    try:
        return reader.read().records
    finally:
        reader.close()


def test_nothing_is_recorded_until_the_notice_is_accepted_and_a_widening_asks_again(
    tmp_path: Path, desktop: VirtualDesktop, terminal: None
) -> None:
    home, collector_data = tmp_path / "home", tmp_path / "collector"
    spool, key, credentials = home / "spool", home / "spool.key", home / "device.json"
    env = {**os.environ, **user_dirs(home), "DISPLAY": desktop.display}
    control = ControlClient(Path(env["XDG_RUNTIME_DIR"]) / "demotrace" / "control.sock")

    def notice_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "demotrace.cli", "notice", *args], env=env, capture_output=True, text=True
        )

    def state() -> str:
        return str(control.status()["state"])

    with ServerThread(create_app(collector_data, admin_token=ADMIN)) as server:
        set_fleet_policy(server.url, FLEET, confirm_widening=True)
        recorder, output = start_recorder(
            desktop.display, spool, key, credentials, server.url, home=home, accept_notice=False
        )
        try:
            assert state() == "awaiting notice"
            type_word(desktop.display, "alpha")
            assert spool_records(spool) == 0, "the recorder stored something before the notice was accepted"
            with CollectorReader(collector_data) as reader:  # nor uploaded anything (uploads leave the spool)
                assert sum(1 for _ in reader.rows()) == 0

            shown = notice_command()
            assert shown.returncode == 0 and "DemoTerm" in shown.stdout and "Not accepted yet" in shown.stdout
            accepted = notice_command("--accept")
            assert accepted.returncode == 0 and "Accepted" in accepted.stdout, accepted.stderr
            assert state() == "recording"
            type_word(desktop.display, "bravo")

            widened = set_fleet_policy(server.url, WIDER, confirm_widening=True)
            assert widened["widens"]
            wait_until(lambda: state() == "awaiting notice", "the widening to stop recording")
            type_word(desktop.display, "charlie")
            assert notice_command("--accept").returncode == 0
            assert state() == "recording"
            type_word(desktop.display, "delta")

            narrowed = set_fleet_policy(server.url, FLEET, confirm_widening=False)
            assert not narrowed["widens"]
            wait_until(lambda: control.request("notice")["digest"] == notice_digest(FLEET), "the narrowing")
            assert state() == "recording"
            type_word(desktop.display, "echo")
        finally:
            code = stop_process(recorder)
        assert code == 0, output.text()

        admin = {"Authorization": f"Bearer {ADMIN}"}
        acks = httpx.get(f"{server.url}{ADMIN_NOTICE_ACKS_PATH}", headers=admin, timeout=30).json()
        assert [ack["digest"] for ack in acks] == [notice_digest(WIDER)]
        audit = httpx.get(f"{server.url}{ADMIN_AUDIT_PATH}", headers=admin, timeout=30).json()
        assert [entry["details"]["digest"] for entry in audit if entry["action"] == "notice_accepted"] == [
            notice_digest(FLEET),
            notice_digest(WIDER),
        ]

    with CollectorReader(collector_data) as reader:
        typed = typed_text(reader.iter_batches())
    assert "bravo" in typed and "delta" in typed and "echo echo" in typed, typed
    assert "alpha" not in typed and "charlie" not in typed, typed
