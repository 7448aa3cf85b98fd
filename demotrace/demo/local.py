"""``demotrace up``: a local collector and the recorder on the real desktop, stopped in order.

Ctrl+C in a terminal signals the whole foreground process group at once. Were the collector and the
recorder in that group, the collector could die before the recorder has uploaded its last records. So
both children run in process groups of their own (``demotrace.processes``) and only ``up`` hears the
terminal; on SIGINT or SIGTERM it stops the recorder first (it flushes the spool and uploads what is
pending to the collector, which is still up), then the collector, and says what was kept and where.
If ``up`` itself is killed outright, Linux sends both children SIGTERM: they stop cleanly on their own
and nothing is left running.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from demotrace.demo.run import demotrace_command, start_collector_with_policy, stop_process
from demotrace.device.paths import config_dir
from demotrace.policy import DEFAULT_LOCAL_POLICY
from demotrace.processes import child_options
from demotrace.protocol import DEVICE_POLICY_PATH
from demotrace.wording import plural

RECORDER_STOP_SECONDS = (
    120.0  # the recorder's own upload flush is bounded at 30 s; frames may still be in OCR
)


class LocalSetupError(Exception):
    """``up`` cannot start; the message says what, why and what to do, in one line."""


def check_port_free(port: int) -> None:
    """Refuse a port something already listens on: our health check would talk to that other program."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise LocalSetupError(
                f"port {port} is already in use ({error.strerror}): another collector or program listens "
                f"there; choose a free one with --port"
            ) from error


def local_credentials_path(data: Path) -> Path:
    """Credentials of this device on the collector kept in ``data``: one file per collector folder, so a
    second folder, or the same one on another port, never mixes tokens."""
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:16]
    return config_dir() / "local-devices" / f"{digest}.json"


def ensure_local_credentials(data: Path, url: str) -> Path:
    """Credentials that the local collector at ``url`` accepts: the kept ones (pointed at today's port),
    or a fresh enrolment when there are none or the collector no longer knows them."""
    from demotrace.device.enrollment import (
        CredentialsError,
        DeviceCredentials,
        enroll,
        load_credentials,
        local_device_id,
        save_credentials,
    )

    path = local_credentials_path(data)
    try:
        kept = load_credentials(path)
    except CredentialsError:
        kept = None
    if kept is not None:
        answer = httpx.get(
            f"{url}{DEVICE_POLICY_PATH}", headers={"Authorization": f"Bearer {kept.token}"}, timeout=10
        )
        if answer.status_code == 200:
            if kept.server_url != url:
                save_credentials(DeviceCredentials(url, kept.device_id, kept.token), path)
            return path
    save_credentials(enroll(url, device_name=local_device_id()), path)
    return path


@dataclass(frozen=True)
class KeptData:
    spool: Path
    collector: Path
    uploaded: int  # records this run added to the collector
    pending: int  # records still waiting in the spool (uploaded ones are deleted from it)


def collector_record_count(data: Path) -> int:
    """How many records the local collector holds (0 before its first start)."""
    from demotrace.collector.reader import CollectorReader, ReaderError

    try:
        with CollectorReader(data) as reader:
            return sum(1 for _ in reader.rows())
    except ReaderError:
        return 0


def spool_pending(spool: Path) -> int:
    """Records in the spool not uploaded yet (no key needed: the backlog is in plaintext columns)."""
    from demotrace.device.spool import SPOOL_FILE, SpoolBacklogReader

    if not (spool / SPOOL_FILE).exists():
        return 0
    reader = SpoolBacklogReader(spool)
    try:
        return reader.read().records
    finally:
        reader.close()


class _StopRequest:
    """Set by SIGINT/SIGTERM (and by the recorder ending); the main thread waits on it, no polling."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        self.event.set()


def record_local(spool: Path, data: Path, port: int, console: Console) -> int:
    """`demotrace up`: a local collector plus the recorder on the real $DISPLAY, until Ctrl+C or SIGTERM.

    Returns the exit code: 0 after a clean stop, the recorder's code if it failed on its own.
    """
    check_port_free(port)
    records_before = collector_record_count(data)
    stop = _StopRequest()
    # Handlers first: a signal during start-up must stop what has started, in order, too.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    collector: subprocess.Popen[str] | None = None
    recorder: subprocess.Popen[str] | None = None
    try:
        # A researcher's own collector: the local default (every app but the denylist), not a fleet's.
        try:
            collector, _, url = start_collector_with_policy(
                data, port, DEFAULT_LOCAL_POLICY, popen_options=child_options()
            )
        except RuntimeError as error:
            raise LocalSetupError(f"the local collector did not start: {_last_line(str(error))}") from error
        credentials = ensure_local_credentials(data, url)
        if stop.event.is_set():
            return 0
        recorder = subprocess.Popen(
            demotrace_command(
                "record", "--spool", str(spool), "--server", url, "--credentials", str(credentials)
            ),
            text=True,
            **child_options(),
        )
        display = os.environ.get("DISPLAY", "the display")
        _say(console, f"collector on {url} (data in {data}); recording {display} — Ctrl+C to stop")
        ended = recorder

        def wait_for_recorder() -> None:
            ended.wait()
            stop.event.set()

        threading.Thread(target=wait_for_recorder, name="demotrace-up-wait", daemon=True).start()
        stop.event.wait()
        if recorder.poll() is None:
            _say(console, "stopping: the recorder saves and uploads what it has, then the collector stops")
            code = stop_process(recorder, timeout=RECORDER_STOP_SECONDS)
            # The recorder stopped on our request: a clean stop is a success even if it was signalled.
            code = 0 if code in (0, -signal.SIGINT) else code
        else:
            code = recorder.returncode
            _say(console, f"the recorder stopped by itself (exit {code})")
        recorder = None
        stop_process(collector)
        collector = None
        uploaded = collector_record_count(data) - records_before
        _report(KeptData(spool, data, uploaded, spool_pending(spool)), console, clean=code == 0)
        return code
    finally:
        # Only on an error path are these still running: stop them in the same order.
        if recorder is not None:
            stop_process(recorder, timeout=RECORDER_STOP_SECONDS)
        if collector is not None:
            stop_process(collector)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(console: Console, text: str) -> None:
    # Whole lines, no markup: the paths in them are for copying, and may hold brackets.
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _report(kept: KeptData, console: Console, *, clean: bool) -> None:
    uploaded = kept.uploaded
    if uploaded + kept.pending == 0:
        _say(console, f"nothing was recorded (spool {kept.spool})")
        return
    _say(
        console,
        f"kept {plural(uploaded + kept.pending, 'record')}: {uploaded} in the collector {kept.collector}, "
        f"{kept.pending} waiting in the encrypted spool {kept.spool}",
    )
    if kept.pending:
        _say(
            console,
            f"{plural(kept.pending, 'record')} not uploaded: they stay in the spool and go at the next "
            f"`demotrace up`; `demotrace build --spool {kept.spool} --out dataset` includes them now",
        )
    if clean and uploaded:
        _say(console, f"build a dataset with: demotrace build --from-server {kept.collector} --out dataset")
