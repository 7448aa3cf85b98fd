"""The person's acceptance of the notice on this device: in a file, in the gate, sent to the collector.

The agent's ``NoticeKeeper`` sets ``notice_accepted`` in the capture gate whenever the policy changes
(``notice.acceptance_holds``: a widening asks again, a narrowing does not) and takes new acceptances from
the control socket (``demotrace notice --accept``, the tray). The acceptance reaches the collector from a
thread of its own, tried again every minute after a failure: a collector that is down never holds up
recording that the person has accepted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from demotrace.device.paths import config_dir
from demotrace.files import write_private_file
from demotrace.notice import NoticeAck, acceptance_holds, decode_ack, encode_ack, notice_digest, notice_text
from demotrace.policy import CaptureGate, CapturePolicy

log = logging.getLogger(__name__)

NOTICE_ACK_FILE = "notice-ack.json"
REPORT_RETRY_SECONDS = 60.0
ASKED_AGAIN = (
    "Recording waits for you",
    "The policy now captures more than the notice you accepted. Read the new notice (tray menu, or "
    "`demotrace notice`): nothing is recorded until you accept it.",
)


class NoticeError(Exception):
    """An acceptance that cannot be taken; the message is for the person."""


def default_ack_path() -> Path:
    return config_dir() / NOTICE_ACK_FILE


def load_ack(path: Path) -> NoticeAck | None:
    """The stored acceptance, or None (none yet, or unreadable: then the person is asked again)."""
    try:
        return decode_ack(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as error:
        log.warning("ignoring unreadable notice acceptance %s: %s", path, error)
        return None


def save_ack(path: Path, ack: NoticeAck) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_file(path, encode_ack(ack), temp_prefix=".notice-")


def accept_notice(
    path: Path, policy: CapturePolicy, digest: str, clock: Callable[[], float] = time.time
) -> NoticeAck:
    """Store the acceptance of the notice ``digest`` for ``policy``; refuses a digest that is not this
    policy's notice (the person read another one: the policy changed meanwhile)."""
    current = notice_digest(policy)
    if digest != current:
        raise NoticeError(
            f"the notice changed (you accepted {digest}, the policy in force has {current}): "
            "read it again with `demotrace notice` and accept that one"
        )
    ack = NoticeAck(digest=digest, policy=policy, accepted_at=clock())
    save_ack(path, ack)
    return ack


def notify_asked_again() -> None:
    from demotrace.device.notify import notify

    notify(*ASKED_AGAIN)


def notice_answer(policy: CapturePolicy, accepted: bool) -> dict[str, Any]:
    """The notice as the control socket and the CLI show it."""
    return {"ok": True, "text": notice_text(policy), "digest": notice_digest(policy), "accepted": accepted}


class NoticeKeeper:
    """Holds ``notice_accepted`` in the gate in step with the policy and the stored acceptance.

    ``report(ack)`` sends an acceptance to the collector (raises on failure); None: no collector.
    """

    def __init__(
        self,
        gate: CaptureGate,
        path: Path,
        report: Callable[[NoticeAck], None] | None = None,
        retry_seconds: float = REPORT_RETRY_SECONDS,
        on_asked_again: Callable[[], object] | None = None,
    ) -> None:
        self.gate = gate
        self.on_asked_again = on_asked_again  # a widening withdrew the acceptance (a notification)
        self.retry_seconds = retry_seconds
        self.path = path
        self.report = report
        self.ack = load_ack(path)
        self.last_report_error: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seen_policy: CapturePolicy | None = None
        self._reporter: threading.Thread | None = None

    def start(self) -> NoticeKeeper:
        self.gate.subscribe(self._gate_changed)
        self._follow_policy()
        if self.report is not None:
            self._reporter = threading.Thread(target=self._report_loop, name="demotrace-notice", daemon=True)
            self._reporter.start()
            self._wake.set()
        return self

    def stop(self) -> None:
        self.gate.unsubscribe(self._gate_changed)
        self._stop.set()
        self._wake.set()
        if self._reporter is not None:
            self._reporter.join(15)

    # --- what the control socket asks -------------------------------------------------------------------

    def notice(self, _request: dict[str, Any] | None = None) -> dict[str, Any]:
        return notice_answer(self.gate.policy, self.gate.state.notice_accepted)

    def accept(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"cmd": "accept_notice", "digest": "..."}``: the person accepted the notice they read."""
        digest = request.get("digest")
        if not isinstance(digest, str):
            return {"ok": False, "error": "accept_notice needs the digest of the notice you read"}
        try:
            ack = accept_notice(self.path, self.gate.policy, digest)
        except NoticeError as error:
            return {"ok": False, "error": str(error)}
        except OSError as error:  # not stored: not accepted (it would not hold across a restart)
            return {"ok": False, "error": f"cannot store the acceptance in {self.path}: {error}"}
        with self._lock:
            self.ack = ack
        self._follow_policy(force=True)
        self._wake.set()
        return {"ok": True, "accepted": True, "digest": digest}

    def reload(self, _request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read the stored acceptance again (``demotrace notice --accept`` wrote it without us)."""
        with self._lock:
            self.ack = load_ack(self.path)
        self._follow_policy(force=True)
        self._wake.set()
        return self.notice()

    # --- inside ------------------------------------------------------------------------------------------

    def _gate_changed(self) -> None:
        self._follow_policy()
        if self.ack is not None and not self.ack.reported:
            self._wake.set()

    def _follow_policy(self, force: bool = False) -> None:
        policy = self.gate.policy
        with self._lock:
            if policy is self._seen_policy and not force:
                return
            self._seen_policy = policy
            accepted = acceptance_holds(self.ack, policy)
        if accepted != self.gate.state.notice_accepted:
            self.gate.update_state(notice_accepted=accepted)
            if not accepted and self.ack is not None:
                log.warning("the policy now captures more than the notice you accepted: recording waits")
                if self.on_asked_again is not None:
                    self.on_asked_again()

    def _report_loop(self) -> None:
        assert self.report is not None
        failed = False
        while True:
            # Timed only while an acceptance failed to reach the collector: it is tried again.
            self._wake.wait(self.retry_seconds if failed else None)
            self._wake.clear()
            failed = not self._report_pending(self.report)  # at a stop too: one last try
            if self._stop.is_set():
                return

    def _report_pending(self, report: Callable[[NoticeAck], None]) -> bool:
        """Send the acceptance if the collector has not got it; False when that failed."""
        with self._lock:
            ack = self.ack
        if ack is None or ack.reported:
            return True
        try:
            report(ack)
        except Exception as error:  # tried again after retry_seconds, or at the next gate change
            self.last_report_error = str(error)
            log.warning("the collector did not get the notice acceptance yet: %s", error)
            return False
        self.last_report_error = None
        with self._lock:
            if self.ack is ack:
                self.ack = msgspec.structs.replace(ack, reported=True)
                try:
                    save_ack(self.path, self.ack)
                except OSError as error:  # sent again after a restart: the collector keeps both
                    log.warning("cannot note that the collector has the acceptance: %s", error)
        return True
