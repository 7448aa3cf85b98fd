"""Fault injection: SIGKILL the recorder at random moments of a scripted session, and check that every
record it committed reaches the collector exactly once.

A real Xvfb + openbox desktop with the demo apps, a real collector process and `demotrace record` as its
own process; the scripted session (XTEST input) runs the whole time. The recorder is killed at a seeded
random moment after each start (some while it is still starting: opening the spool, enrolling, fetching
the policy), the record ids in its spool are read right after the kill (what it had committed), and it
is started again. After the last kill a recorder runs to a clean stop, which uploads what is left.

Checked: every record id seen in the spool after a kill is at the collector; each recorder session's
batches are there once each with no gap in ``seq`` (a batch committed between two kills and uploaded is
not lost either); nothing is left pending; the OCR workers die with the recorder they belong to.

    .venv/bin/python -m bench.fault_kills --kills 50 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import (
    RECORDER_SETTLE_SECONDS,
    ProcessOutput,
    demo_fleet_policy,
    free_port,
    start_collector_with_policy,
    start_recorder,
    stop_process,
)
from demotrace.device.spool import SPOOL_FILE

# A quarter of the kills land while the recorder starts (this long after it was started: opening the
# spool, enrolling, fetching the policy), the others this long after it said "recording".
KILLS_WHILE_STARTING = 0.25
KILL_WHILE_STARTING_S = (0.2, 2.5)
KILL_WHILE_RECORDING_S = (0.5, 12.0)
RECORDER_START_TIMEOUT_S = 60.0
WORKER_EXIT_TIMEOUT_S = 10.0


@dataclass
class KillTally:
    kills: int = 0
    kills_before_recording: int = 0  # the recorder had not said "recording" yet
    committed: set[str] = field(default_factory=set)  # record ids seen in the spool after a kill
    stored: int = 0  # records at the collector at the end
    sessions: int = 0  # recorder sessions with batches at the collector
    batches: int = 0
    frames: int = 0
    actions_injected: int = 0
    missing: list[str] = field(default_factory=list)  # committed, not at the collector
    duplicate_batches: list[str] = field(default_factory=list)  # one (session, seq) stored twice
    seq_gaps: list[str] = field(default_factory=list)  # sessions whose seqs are not 0..n-1
    left_pending: int = -1
    orphan_workers: list[str] = field(default_factory=list)  # children that outlived a killed recorder
    final_exit: int | None = None
    recorder_errors: list[str] = field(default_factory=list)  # tracebacks in a recorder's output

    @property
    def exactly_once(self) -> bool:
        return not (self.missing or self.duplicate_batches or self.seq_gaps) and self.left_pending == 0


def spool_record_ids(spool: Path) -> set[str]:
    """Record ids in a spool a killed recorder left, read as the next start finds them (WAL included)."""
    path = spool / SPOOL_FILE
    if not path.exists():
        return set()
    # Read-only: the next recorder, not this reader, recovers the WAL the kill left behind.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT record_id FROM records")}
    except sqlite3.OperationalError:  # killed before the schema was created
        return set()
    finally:
        db.close()


def spool_pending(spool: Path) -> int:
    db = sqlite3.connect(f"file:{spool / SPOOL_FILE}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT COUNT(*) FROM records WHERE uploaded_at IS NULL").fetchone()
    finally:
        db.close()
    return int(count)


def kill_hard(process: subprocess.Popen[str], tally: KillTally) -> None:
    """SIGKILL the recorder; its workers must go with it (they are told by PR_SET_PDEATHSIG)."""
    try:
        workers = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    process.send_signal(signal.SIGKILL)
    process.wait()
    _gone, alive = psutil.wait_procs(workers, timeout=WORKER_EXIT_TIMEOUT_S)
    for worker in alive:
        tally.orphan_workers.append(" ".join(worker.cmdline()[:4]))
        worker.kill()


def check_collector(collector_data: Path, tally: KillTally) -> None:
    from demotrace.collector.reader import CollectorReader

    with CollectorReader(collector_data) as reader:
        rows = list(reader.rows())
    stored = {row.record_id for row in rows}
    tally.stored = len(rows)
    tally.missing = sorted(tally.committed - stored)
    seqs: dict[str, Counter[int]] = {}
    for row in rows:
        if row.kind == "batch":
            assert row.seq is not None
            seqs.setdefault(row.session_id, Counter())[row.seq] += 1
            tally.batches += 1
        else:
            tally.frames += 1
    tally.sessions = len(seqs)
    for session, counts in seqs.items():
        tally.duplicate_batches += [f"{session}#{seq}" for seq, count in counts.items() if count > 1]
        if sorted(counts) != list(range(len(counts))):
            tally.seq_gaps.append(f"{session}: {sorted(counts)}")


def _note_errors(output: ProcessOutput, tally: KillTally) -> None:
    if "Traceback" in output.text():
        tally.recorder_errors.append(output.text()[-2000:])


def run_kills(
    out: Path,
    kills: int,
    seed: int,
    say: Callable[[str], None] = lambda _text: None,
    desktop: VirtualDesktop | None = None,
) -> KillTally:
    """The whole run in ``out``: ``kills`` SIGKILLs, then a clean stop and the checks; on ``desktop``
    (the demo apps are started on it and closed after), else on a virtual desktop of its own."""
    with contextlib.ExitStack() as stack:
        if desktop is None:
            desktop = stack.enter_context(VirtualDesktop())
        tally = _kill_on(desktop, out, kills, seed, say)
    check_collector(out / "collector", tally)
    return tally


def _kill_on(
    desktop: VirtualDesktop, out: Path, kills: int, seed: int, say: Callable[[str], None]
) -> KillTally:
    from demotrace.demo.script import run_scripted_session, start_demo_apps

    rng = random.Random(f"fault-kills-{seed}")
    out.mkdir(parents=True, exist_ok=True)
    spool, key, credentials = out / "spool", out / "spool.key", out / "device.json"
    collector_data = out / "collector"
    tally = KillTally()
    stop_driving = threading.Event()
    injected: list[int] = []
    apps = start_demo_apps(desktop, out / "app-state.json")
    collector, _collector_output, url = start_collector_with_policy(
        collector_data, free_port(), demo_fleet_policy()
    )

    def drive() -> None:
        actions = run_scripted_session(
            desktop.display, seed=seed, app_state_file=out / "app-state.json", stop=stop_driving
        )
        injected.append(len(actions))

    driver = threading.Thread(target=drive, name="scripted-session", daemon=True)
    try:
        driver.start()
        for number in range(1, kills + 1):
            recorder, output = start_recorder(
                desktop.display, spool, key, credentials, url, wait=False, accept_notice=True
            )
            if rng.random() < KILLS_WHILE_STARTING:
                moment = rng.uniform(*KILL_WHILE_STARTING_S)
                time.sleep(moment)
            else:
                moment = rng.uniform(*KILL_WHILE_RECORDING_S)
                output.ready.wait(RECORDER_START_TIMEOUT_S)
                time.sleep(moment)
            if recorder.poll() is not None:
                raise RuntimeError(f"the recorder exited by itself:\n{output.text()}")
            recording = output.ready.is_set()
            kill_hard(recorder, tally)
            tally.kills += 1
            tally.kills_before_recording += not recording
            _note_errors(output, tally)
            tally.committed |= spool_record_ids(spool)
            phase = "recording" if recording else "starting"
            say(f"kill {number}/{kills} {moment:.2f} s into {phase}"
                f": {len(tally.committed)} records committed so far")  # fmt: skip
        # The last recorder stops cleanly, which uploads what is left (the input stops meanwhile).
        stop_driving.set()
        recorder, output = start_recorder(desktop.display, spool, key, credentials, url, accept_notice=True)
        time.sleep(RECORDER_SETTLE_SECONDS)
        tally.final_exit = stop_process(recorder)
        _note_errors(output, tally)
        tally.committed |= spool_record_ids(spool)
        tally.left_pending = spool_pending(spool)
    finally:
        stop_driving.set()
        stop_process(collector)
        driver.join(60)  # ends after its current step
        apps.stop()
    tally.actions_injected = injected[0] if injected else 0
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dt-kills-") as folder:
        tally = run_kills(Path(folder), args.kills, args.seed, say=print)
    print(
        f"{tally.kills} SIGKILLs ({tally.kills_before_recording} before the recorder was recording)"
        f" in {time.monotonic() - started:.0f} s, {tally.actions_injected} actions injected"
    )
    print(
        f"committed records seen after kills: {len(tally.committed)}; at the collector: {tally.stored}"
        f" ({tally.batches} batches in {tally.sessions} sessions, {tally.frames} frames)"
    )
    print(
        f"missing {len(tally.missing)}, duplicate batches {len(tally.duplicate_batches)},"
        f" sessions with seq gaps {len(tally.seq_gaps)}, left pending {tally.left_pending},"
        f" orphaned workers {len(tally.orphan_workers)}, final exit {tally.final_exit},"
        f" recorder tracebacks {len(tally.recorder_errors)}"
    )
    print("exactly once: " + ("yes" if tally.exactly_once else "NO"))
    for error in tally.recorder_errors[:3]:
        print(f"--- a recorder's output ended with:\n{error}")


if __name__ == "__main__":
    main()
