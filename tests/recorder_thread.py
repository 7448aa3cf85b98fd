"""Run a Recorder on a thread of the test, the way the recorder tests on Xvfb all need it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from demotrace.capture.recorder import Recorder
from demotrace.device.spool import Spool
from demotrace.policy import CaptureGate

BATCH_SECONDS = 0.3


@contextmanager
def recording(
    spool: Spool,
    display: str,
    gate: CaptureGate | None = None,
    *,
    batch_seconds: float = BATCH_SECONDS,
    **options: Any,
) -> Iterator[Recorder]:
    """A Recorder running for the block; on exit it is stopped and whatever it raised is raised here."""
    started = threading.Event()
    stop = threading.Event()
    recorder = Recorder(
        spool,
        "test-device",
        display=display,
        on_started=started.set,
        batch_seconds=batch_seconds,
        # The notice is accepted explicitly here, as a person would: a bare gate records nothing.
        gate=gate if gate is not None else CaptureGate(notice_accepted=True),
        **options,
    )
    failures: list[BaseException] = []

    def run() -> None:
        try:
            recorder.run(stop)
        except BaseException as failure:
            failures.append(failure)
            started.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(20)
    try:
        if failures:
            raise failures[0]
        yield recorder
    finally:
        stop.set()
        thread.join(20)
        assert not thread.is_alive()
    if failures:
        raise failures[0]
