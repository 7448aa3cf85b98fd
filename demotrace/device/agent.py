"""The device agent: one recording process with everything around the recorder wired to one gate.

The capture gate is the single place where policy, pause, exemption, power and network state meet:
the recorder decides every event against it, the uploader holds or sends against it, the control
socket (pause/resume/task markers) and the policy refresher write to it.

`demotrace record` parses its options and then replaces itself (``exec``, same process id) with
``python -m demotrace.device.agent CONFIG``: the recording process runs for hours and carries none of the
CLI's libraries (typer, rich, pydantic, pygments: ~20 MB resident, measured with /proc/self/smaps).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from demotrace.capture.browser_bridge import BridgeError, BrowserBridge
from demotrace.capture.ocr_process import OcrProcessScrubber
from demotrace.capture.recorder import Recorder, record_until_signal
from demotrace.capture.scrub import DeferredScrubWorker
from demotrace.device.spool import Spool, open_spool
from demotrace.policy import CaptureGate, CapturePolicy, load_policy
from demotrace.redact.ocr_settings import OcrError
from demotrace.redact.tesseract_api import tessdata_folder
from demotrace.wording import plural

if TYPE_CHECKING:
    from demotrace.device.enrollment import DeviceCredentials
    from demotrace.notice import NoticeAck

# Before a fleet device has heard from its collector (and has no cached policy), nothing is allowed:
# a device must never record more than its fleet policy says, not even for the first seconds.
FLEET_BOOTSTRAP_POLICY = CapturePolicy(mode="allowlist")


@dataclass(frozen=True)
class AgentConfig:
    spool: Path
    key: Path | None
    config_dir: Path
    device_id: str  # local id, used when there is no server
    server: str | None = None
    credentials: Path | None = None
    policy: Path | None = None  # a local policy file: wins over the fleet policy
    control_socket: Path | None = None
    pause_state: Path | None = None
    browser_socket: Path | None = None  # where the browser extension's host reports (None: default)
    ca_bundle: Path | None = None  # the only CA trusted for the collector (else the system's)
    allow_plain_http: bool = False
    spool_quota_bytes: int | None = None  # frames beyond it go, oldest unsent first
    notice_ack: Path | None = None  # the person's acceptance of the notice (None: config_dir's)


def _device_credentials(config: AgentConfig, server: str) -> DeviceCredentials:
    from demotrace.device.enrollment import (
        default_credentials_path,
        enroll,
        load_credentials,
        save_credentials,
    )

    path = config.credentials or default_credentials_path()
    ca_bundle = str(config.ca_bundle) if config.ca_bundle is not None else None
    if path.exists():
        device = load_credentials(path)
        if device.server_url.rstrip("/") != server.rstrip("/"):
            raise ValueError(
                f"{path} is enrolled with {device.server_url}, not {server}: enroll with that collector "
                f"(demotrace enroll --server {server} --force), or record with --server {device.server_url}"
            )
        if ca_bundle is not None or config.allow_plain_http:  # this run's flags win over enrolment's
            device = msgspec.structs.replace(
                device,
                ca_bundle=ca_bundle or device.ca_bundle,
                allow_plain_http=config.allow_plain_http or device.allow_plain_http,
            )
        return device
    device = enroll(
        server, device_name=config.device_id, ca_bundle=ca_bundle, allow_plain_http=config.allow_plain_http
    )
    save_credentials(device, path)
    return device


def _notice_reporter(device: DeviceCredentials) -> Callable[[NoticeAck], None]:
    from demotrace.device.policy_sync import report_notice_ack

    def report(ack: NoticeAck) -> None:
        report_notice_ack(device, ack)

    return report


def encode_config(config: AgentConfig) -> str:
    return msgspec.json.encode(config, enc_hook=str).decode()


def decode_config(text: str) -> AgentConfig:
    def paths(kind: type, value: Any) -> Any:
        if kind is Path:
            return Path(value)
        raise NotImplementedError(kind)

    return msgspec.json.decode(text, type=AgentConfig, dec_hook=paths)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_agent(config: AgentConfig, say: Callable[[str], None] = _say) -> int:
    """Record until SIGINT/SIGTERM with control, uploads and policy refresh; returns the exit code."""
    from demotrace.device.consent import NOTICE_ACK_FILE, NoticeKeeper, notify_asked_again
    from demotrace.device.control import LocalControl
    from demotrace.device.device_state import DeviceStateWatcher
    from demotrace.memory import keep_heap_flat

    keep_heap_flat()  # before any thread starts
    local_policy = load_policy(config.policy) if config.policy is not None else None
    store: Spool = open_spool(config.spool, config.key, config.spool_quota_bytes)
    # Nothing is recorded until the NoticeKeeper finds the person's acceptance of this policy's notice.
    gate = CaptureGate(
        local_policy or (FLEET_BOOTSTRAP_POLICY if config.server else load_policy(None)),
        notice_accepted=False,
    )
    try:
        tessdata_folder()  # the loaded engine needs Debian's model (tesseract-ocr-eng)
    except OcrError as error:
        say(f"warning: {error}: frames cannot be scrubbed and are dropped")
    # Frames taken on battery are held in the spool unscrubbed (encrypted, never uploaded) and
    # scrubbed by this worker once the device is back on mains power.
    # OCR runs in worker processes (started on first use): see capture/ocr_process.py.
    deferred_scrubber = OcrProcessScrubber()
    frame_scrubber = OcrProcessScrubber()
    deferred_scrub = DeferredScrubWorker(store, deferred_scrubber).start()

    def follow_power() -> None:
        if gate.state.on_battery:
            deferred_scrub.pause()
        else:
            deferred_scrub.resume()

    gate.subscribe(follow_power)
    watcher = DeviceStateWatcher(gate)
    watcher.start()
    follow_power()
    uploader = None
    sync = None
    notice: NoticeKeeper | None = None
    device_id = config.device_id
    ack_path = config.notice_ack or config.config_dir / NOTICE_ACK_FILE
    try:
        if config.server is not None:
            from demotrace.device.policy_sync import PolicySync
            from demotrace.device.upload_rules import UPLOAD_STATE_FILE
            from demotrace.device.uploader import Uploader

            device = _device_credentials(config, config.server)
            device_id = device.device_id
            # A local policy file replaces the fleet's policy, never an exemption: that one always holds.
            sync = PolicySync(
                device,
                gate,
                store,
                cache_file=config.config_dir / "policy-cache.json",
                follow_fleet_policy=local_policy is None,
            )
            sync.refresh_once()  # the fleet policy before the first event, when the server answers
            notice = NoticeKeeper(
                gate, ack_path, report=_notice_reporter(device), on_asked_again=notify_asked_again
            ).start()
            sync.start()
            uploader = Uploader(
                store,
                device,
                gate=gate,
                state_path=config.spool / UPLOAD_STATE_FILE,
                # An exempt answer to an upload applies the exemption now, not at the next refresh.
                on_exempt=sync.refresh_soon,
            )
            uploader.start()

        if notice is None:
            notice = NoticeKeeper(gate, ack_path).start()  # a researcher's own recording: accepted locally
        if not gate.state.notice_accepted:
            say(
                "waiting for you to accept the notice: nothing is captured until then "
                "(read it with `demotrace notice`, accept it with `demotrace notice --accept` or the tray)"
            )
        keeper = notice
        control: list[LocalControl] = []

        def status_details() -> dict[str, Any]:
            """What `demotrace status` shows beyond pause and policy: the spool, why uploads wait (or
            fail) and when they go, what was dropped."""
            # Without an uploader (no collector) the records stay on this device.
            answer: dict[str, Any] = {"spool": str(config.spool), "uploads": uploader is not None}
            answer["notice_report_error"] = keeper.last_report_error
            answer.update(store.room())
            if uploader is not None:
                answer.update(uploader.status())
                answer["upload_error"] = uploader.last_error
            return answer

        def attach_control(recorder: Recorder) -> None:
            local = LocalControl(
                gate,
                recorder.mark,
                socket_path=config.control_socket,
                state_file=config.pause_state,
                pending_count=store.pending_count,
                more_status=status_details,
                on_pause_change=sync.note_pause_change if sync is not None else None,
                more_commands={
                    "notice": keeper.notice,
                    "accept_notice": keeper.accept,
                    "notice_reload": keeper.reload,
                },
            ).start()
            control.append(local)
            if sync is not None:
                sync.attach_pause(local.controller)  # pauses asked for on the portal

        # The browser extension's reports: pages decide browser windows, not their titles.
        browser: BrowserBridge | None
        try:
            browser = BrowserBridge(config.browser_socket).start()
        except BridgeError as error:
            say(f"warning: {error}; browser pages cannot be told apart (allowlisted sites are not captured)")
            browser = None
        try:
            return record_until_signal(
                store,
                device_id,
                gate=gate,
                on_recorder=attach_control,
                scrubber=frame_scrubber,
                browser=browser,
            )
        finally:
            for local in control:
                local.stop()
            if browser is not None:
                browser.stop()
    finally:
        if notice is not None:
            notice.stop()
        if sync is not None:
            sync.stop()
        if uploader is not None:
            left = uploader.stop(flush=True, timeout=30)
            say(
                f"uploaded {plural(uploader.records_sent, 'record')}, {plural(uploader.bytes_sent, 'byte')}"
                f" ({left} pending)"
            )
        watcher.stop()
        deferred_scrub.close()
        frame_scrubber.close()
        deferred_scrubber.close()
        store.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m demotrace.device.agent CONFIG``: run the agent for a config `demotrace record` encoded."""
    # httpx loads its own command-line client (click, rich, pygments: ~7 MB resident) whenever those
    # are installed, as they are for our CLI; a None entry makes that import fail and httpx skips it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    from demotrace.capture.recorder import RecorderError
    from demotrace.device.client import TransportError
    from demotrace.device.spool import SpoolError
    from demotrace.policy import PolicyError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _say("usage: python -m demotrace.device.agent CONFIG (started by `demotrace record`; use that)")
        return 2
    config = decode_config(args[0])
    try:
        return run_agent(config)
    except httpx.HTTPError as error:
        _say(f"error: cannot reach the collector at {config.server}: {error}")
        return 2
    # TransportError: enrollment refused or unreachable, unreadable credentials.
    except (TransportError, SpoolError, PolicyError, ValueError) as error:
        _say(f"error: {error}")
        return 2
    except RecorderError as error:
        _say(f"error: {error}")
        return 3


if __name__ == "__main__":
    sys.exit(main())
