"""The upload in progress, as `demotrace status` shows it, from a real recorder sending to a real collector.

The recorder starts with a backlog older than the burst age (records left from an earlier session), so it
sends at once; the control socket is read while it does."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_up import user_env
from test_uploader import make_frame

from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import ControlError
from demotrace.device.enrollment import enroll, save_credentials
from demotrace.device.spool import SPOOL_FILE, Spool, load_or_create_key

pytestmark = pytest.mark.x11

RECORDS = 240


def an_old_backlog(spool_dir: Path, key: Path) -> None:
    """``RECORDS`` frames spooled as if ten minutes ago: past the burst age, so they go at once."""
    spool = Spool(spool_dir, load_or_create_key(key))
    try:
        spool.append([make_frame("earlier", index, size=40_000) for index in range(RECORDS)])
    finally:
        spool.close()
    with sqlite3.connect(spool_dir / SPOOL_FILE) as db:
        db.execute("UPDATE records SET created = created - 600")


def test_status_shows_the_recorders_upload_while_it_goes(tmp_path: Path, desktop: VirtualDesktop) -> None:
    home = Path(f"/tmp/dt-{os.getpid()}")  # the control socket's path must stay short
    env = user_env(home, desktop.display)
    spool_dir, key, credentials = tmp_path / "spool", tmp_path / "spool.key", tmp_path / "device.json"
    an_old_backlog(spool_dir, key)
    with ServerThread(create_app(tmp_path / "collector")) as server:
        save_credentials(enroll(server.url, "laptop"), credentials)
        recorder = subprocess.Popen(
            [
                *(sys.executable, "-m", "demotrace.cli", "record", "--server", server.url),
                *("--spool", str(spool_dir), "--key", str(key), "--credentials", str(credentials)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        client = ControlClient(home / "run" / "demotrace" / "control.sock")
        under_way: list[dict[str, object]] = []
        last: dict[str, object] = {}
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    progress = client.request("status").get("upload_progress") or {}
                except ControlError:  # not listening yet
                    time.sleep(0.05)
                    continue
                if progress.get("active"):
                    under_way.append(progress)
                elif progress.get("ended"):
                    last = progress
                    break
                time.sleep(0.02)
            shown = subprocess.run(
                [sys.executable, "-m", "demotrace.cli", "status"], capture_output=True, text=True, env=env
            )
        finally:
            recorder.send_signal(signal.SIGINT)
            output, _ = recorder.communicate(timeout=60)
            shutil.rmtree(home, ignore_errors=True)
    assert under_way, f"never saw the upload under way; last: {last}\n{output}"
    sent = [int(str(progress["records_sent"])) for progress in under_way]
    assert sent == sorted(sent) and sent[0] < RECORDS and len(set(sent)) > 1  # seen part way, moving
    # The burst is the backlog, plus what the recorder itself spools meanwhile (its session's first events).
    assert all(int(str(progress["records_total"])) >= RECORDS for progress in under_way), under_way[:3]
    assert int(str(last["records_sent"])) >= RECORDS, last
    words = " ".join(shown.stdout.split())
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"last upload (\d+) records, [\d.]+ MB, ended at", words), words
    assert int(re.findall(r"last upload (\d+) records", words)[0]) >= RECORDS
    assert "Traceback" not in output
