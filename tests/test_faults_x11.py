"""Fault injection on a real X server, with `demotrace record` as its own process: SIGKILLs at random
moments of a scripted session, and a full disk under a running recorder. The 50-kill run is
bench/fault_kills.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.fault_kills import run_kills
from demotrace.demo.compare import as_redacted, compare_actions
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import (
    RECORDER_SETTLE_SECONDS,
    demotrace_command,
    start_recorder,
    stop_process,
    user_dirs,
)
from demotrace.demo.script import run_scripted_session, start_demo_apps
from demotrace.device.control_client import ControlClient
from demotrace.device.control_protocol import SOCKET_NAME
from demotrace.device.spool import open_spool
from demotrace.model import Action

pytestmark = pytest.mark.x11


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Tests may poll what they observe; the code under test may not."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_sigkilled_recorders_lose_no_committed_record_and_duplicate_none(
    desktop: VirtualDesktop, tmp_path: Path
) -> None:
    # Seed 1: two kills 8.4 s and 7.0 s into recording, one 1.3 s after a launch (while it starts here).
    tally = run_kills(tmp_path, kills=3, seed=1, desktop=desktop)
    assert tally.kills == 3
    assert tally.recorder_errors == []
    assert tally.orphan_workers == []  # the OCR workers die with their recorder
    assert tally.final_exit == 0
    assert tally.committed, "no kill found a committed record: the test proves nothing"
    assert tally.missing == [], "records committed before a kill never reached the collector"
    assert tally.duplicate_batches == [] and tally.seq_gaps == []
    assert tally.left_pending == 0
    assert tally.exactly_once


def _fill(path: Path, leave_bytes: int) -> None:
    """Fill the filesystem of ``path`` with one file until ``leave_bytes`` are free."""
    free = shutil.disk_usage(path.parent).free
    with path.open("wb") as handle:
        handle.write(os.urandom(max(0, free - leave_bytes)))


def _build_actions(spool: Path, key: Path, out: Path) -> list[Action]:
    from demotrace.dataset.build import build_dataset
    from demotrace.dataset.load import load_actions

    store = open_spool(spool, key)
    try:
        build_dataset(store.batches(), store.load_frame, out, formats=["agentnet"])
    finally:
        store.close()
    return load_actions(out / "trajectories.jsonl")


def test_a_recorder_on_a_full_disk_keeps_recording_and_says_what_it_dropped(
    desktop: VirtualDesktop, tiny_disk: Path, tmp_path: Path
) -> None:
    home, key = tmp_path / "home", tmp_path / "spool.key"
    apps = start_demo_apps(desktop, tmp_path / "app-state.json")
    ballast = tiny_disk / "ballast"  # what the user deletes later to make room
    _fill(ballast, leave_bytes=640 * 1024)  # the spool, its reserve and a few frames
    spool = tiny_disk / "spool"
    # No server: a researcher's recorder, so nothing leaves the spool and the disk stays full.
    recorder, output = start_recorder(
        desktop.display, spool, key, tmp_path / "device.json", None, home=home, accept_notice=True
    )
    control = ControlClient(Path(user_dirs(home)["XDG_RUNTIME_DIR"]) / "demotrace" / SOCKET_NAME)
    stop = threading.Event()
    injected: list[Action] = []

    def drive() -> None:
        injected.extend(
            run_scripted_session(
                desktop.display, seed=3, app_state_file=tmp_path / "app-state.json", stop=stop
            )
        )

    driver = threading.Thread(target=drive, daemon=True)
    try:
        driver.start()
        wait_for(lambda: control.status().get("frames_dropped_disk_full", 0) > 0, 120, "dropped frames")
        assert recorder.poll() is None, output.text()
        # What the person sees: `demotrace status` says the disk is full and what was dropped.
        shown = subprocess.run(
            demotrace_command("status"),
            env={**os.environ, **user_dirs(home), "COLUMNS": "300"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert "frames dropped for room" in shown.stdout and "full disk)" in shown.stdout, shown.stdout
        # Room comes back: the recorder notices by itself at its next write.
        ballast.unlink()
        wait_for(lambda: not control.status()["disk_full"], 60, "the spool to leave its disk-full state")
        status = control.status()
        assert status["events_waiting_for_room"] == 0
        dropped = status["frames_dropped_disk_full"]
    finally:
        stop.set()
        driver.join(60)
        time.sleep(RECORDER_SETTLE_SECONDS)
        exit_code = stop_process(recorder)
        apps.stop()
    assert exit_code == 0, output.text()
    assert "Traceback" not in output.text(), output.text()
    # Every event was kept: each injected action comes out of the spool, in order.
    actions = _build_actions(spool, key, tmp_path / "dataset")
    comparison = compare_actions(as_redacted(injected), actions)
    assert comparison.problems == [] and comparison.captured == comparison.injected
    store = open_spool(spool, key)
    try:
        assert store.drops().disk_full == dropped  # counted on disk, kept across the restart
        seqs = sorted(batch.seq for batch in store.batches())
        assert seqs == list(range(len(seqs)))
    finally:
        store.close()
