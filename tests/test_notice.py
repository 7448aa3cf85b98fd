"""The recording notice: made from the policy, accepted before anything is captured, asked again when a
policy change widens capture (not when it narrows), and stored on the collector with an audit entry.

Pure parts without X; the collector part against a real collector (ServerThread, SQLite and PostgreSQL).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import msgspec
import pytest
from test_collector import Live

from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.device.consent import NoticeError, NoticeKeeper, accept_notice, load_ack
from demotrace.device.enrollment import DeviceCredentials, save_credentials
from demotrace.device.policy_sync import report_notice_ack
from demotrace.notice import NoticeAck, acceptance_holds, notice_digest, notice_text
from demotrace.policy import CaptureGate, CapturePolicy, DeviceState, WindowContext, decide
from demotrace.protocol import ADMIN_NOTICE_ACKS_PATH, DEVICE_NOTICE_ACK_PATH

ADMIN = "notice-admin-token-0123456789"
NOW = 1_800_000_000.0
EDITOR = WindowContext(app="Gedit", instance="gedit", title="notes.txt")
FLEET = CapturePolicy(
    mode="allowlist", allow_apps=["gedit", "xterm"], allow_url_patterns=[r"^https://github\.com/"]
)
WIDER = msgspec.structs.replace(FLEET, allow_apps=["gedit", "xterm", "thunderbird"])
NARROWER = msgspec.structs.replace(FLEET, allow_apps=["gedit"])


def test_nothing_is_captured_before_the_notice_is_accepted() -> None:
    waiting = decide(FLEET, EDITOR, DeviceState(), NOW)
    assert (waiting.capture, waiting.reason) == ("nothing", "notice not accepted")
    assert decide(FLEET, EDITOR, DeviceState(notice_accepted=True), NOW).capture == "all"
    # An exemption still says so first: the person sees why, not a notice they need not accept.
    assert decide(FLEET, EDITOR, DeviceState(exempt=True), NOW).reason == "exempt"
    assert CaptureGate(FLEET).decide(EDITOR).reason == "notice not accepted"


def test_the_notice_says_what_is_captured_what_never_is_the_rights_and_the_use() -> None:
    text = notice_text(FLEET)
    for expected in ("gedit", "xterm", r"^https://github\.com/", "keepassxc", "incognito", "<PASSWORD>"):
        assert expected in text
    assert "pause at any time, for up to 30 minutes" in text
    assert "exemption" in text and "delete" in text and "30 days" in text
    assert "train AI agents" in text and "never used to judge" in text
    assert "thunderbird" not in text and "thunderbird" in notice_text(WIDER)
    assert "Every app and site except" in notice_text(CapturePolicy())


def test_a_widening_asks_again_a_narrowing_does_not() -> None:
    ack = NoticeAck(digest=notice_digest(FLEET), policy=FLEET, accepted_at=NOW)
    assert notice_digest(FLEET) != notice_digest(WIDER) != notice_digest(NARROWER)
    assert acceptance_holds(ack, FLEET)
    assert not acceptance_holds(ack, WIDER)
    assert acceptance_holds(ack, NARROWER)
    assert not acceptance_holds(ack, msgspec.structs.replace(FLEET, retention_days=90))
    assert not acceptance_holds(None, FLEET)
    assert not acceptance_holds(msgspec.structs.replace(ack, version=0), FLEET)


def test_the_keeper_opens_the_gate_on_acceptance_and_closes_it_on_a_widening(tmp_path: Path) -> None:
    gate = CaptureGate(FLEET)
    reported: list[NoticeAck] = []
    sent = threading.Event()

    def report(ack: NoticeAck) -> None:
        reported.append(ack)
        sent.set()

    asked_again: list[str] = []
    keeper = NoticeKeeper(
        gate,
        tmp_path / "ack.json",
        report=report,
        on_asked_again=lambda: asked_again.append(gate.policy.mode),
    ).start()
    try:
        assert gate.decide(EDITOR).reason == "notice not accepted"
        assert keeper.notice()["accepted"] is False
        stale = keeper.accept({"digest": notice_digest(WIDER)})
        assert not stale["ok"] and "the notice changed" in stale["error"]
        assert keeper.accept({"digest": keeper.notice()["digest"]})["ok"]
        assert gate.decide(EDITOR).capture == "all"
        assert sent.wait(10) and reported[0].digest == notice_digest(FLEET)

        gate.set_policy(NARROWER)
        assert gate.decide(EDITOR).capture == "all"
        assert asked_again == []  # neither the first notice nor a narrowing asks "again"
        gate.set_policy(WIDER)
        assert gate.decide(EDITOR).reason == "notice not accepted"
        assert asked_again == ["allowlist"]
        assert keeper.accept({"digest": notice_digest(WIDER)})["ok"]
        assert gate.decide(EDITOR).capture == "all"
    finally:
        keeper.stop()
    stored = load_ack(tmp_path / "ack.json")
    assert stored is not None and stored.digest == notice_digest(WIDER) and stored.reported

    # A restarted agent finds the acceptance on disk; one that starts with a wider policy does not.
    restarted = CaptureGate(WIDER)
    NoticeKeeper(restarted, tmp_path / "ack.json").start().stop()
    assert restarted.state.notice_accepted
    wider_still = CaptureGate(msgspec.structs.replace(WIDER, allow_apps=[*WIDER.allow_apps, "gimp"]))
    NoticeKeeper(wider_still, tmp_path / "ack.json").start().stop()
    assert not wider_still.state.notice_accepted


def test_an_unreadable_acceptance_asks_again(tmp_path: Path) -> None:
    path = tmp_path / "ack.json"
    path.write_text("{not json")
    assert load_ack(path) is None
    with pytest.raises(NoticeError):
        accept_notice(path, FLEET, "0" * 16)
    accept_notice(path, FLEET, notice_digest(FLEET))
    assert acceptance_holds(load_ack(path), FLEET)


def test_the_collector_stores_the_acceptance_audited_and_in_its_schema(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    with (
        ServerThread(create_app(data_dir, database_url=database_url, admin_token=ADMIN)) as server,
        httpx.Client(timeout=30) as client,
    ):
        live = Live(server.url, data_dir, client)
        device_id, token = live.enroll("laptop")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.get(f"{server.url}{ADMIN_NOTICE_ACKS_PATH}", headers=admin).json() == []

        from demotrace.collector.exemptions import render_policy_toml
        from demotrace.policy import DEFAULT_FLEET_POLICY

        fleet = DEFAULT_FLEET_POLICY
        assert render_policy_toml(fleet)  # the collector serves its default fleet policy
        ack = NoticeAck(digest=notice_digest(fleet), policy=fleet, accepted_at=NOW)
        report_notice_ack(DeviceCredentials(server.url, device_id, token), ack)

        listed = client.get(f"{server.url}{ADMIN_NOTICE_ACKS_PATH}", headers=admin).json()
        assert [(row["device_id"], row["digest"], row["current_policy_notice"]) for row in listed] == [
            (device_id, notice_digest(fleet), True)
        ]
        audit = client.get(f"{server.url}/v1/admin/audit", headers=admin).json()
        entries = [entry for entry in audit if entry["action"] == "notice_accepted"]
        assert [(entry["actor"], entry["details"]["digest"]) for entry in entries] == [
            (f"device:{device_id}", notice_digest(fleet))
        ]

        url = f"{server.url}{DEVICE_NOTICE_ACK_PATH}"
        bad = client.post(url, json={"digest": "nope"}, headers={"Authorization": f"Bearer {token}"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
        assert (
            client.post(url, json={"digest": "a" * 16, "notice_version": 1, "accepted_at": 1}).status_code
            == 401
        )
        assert client.get(f"{server.url}{ADMIN_NOTICE_ACKS_PATH}").status_code == 401

        schema = client.get(f"{server.url}/openapi.json").json()
        body = schema["paths"][DEVICE_NOTICE_ACK_PATH]["post"]["requestBody"]["content"]["application/json"]
        assert set(body["schema"]["properties"]) == {"digest", "notice_version", "accepted_at"}
        assert "get" in schema["paths"][ADMIN_NOTICE_ACKS_PATH]


def test_the_tray_offers_the_notice_and_says_why_nothing_is_recorded(tmp_path: Path) -> None:
    from demotrace.device.control_client import ControlClient
    from demotrace.device.tray import TrayActions, menu_entries, status_text

    opened: list[Path] = []
    actions = TrayActions(ControlClient(tmp_path / "control.sock"), open_notice=opened.append)
    entry = next(entry for entry in menu_entries(actions) if entry.label == "Read the notice…")
    entry.action()
    assert opened == [tmp_path / "control.sock"]
    assert "until you read and accept the notice" in status_text({"state": "awaiting notice"})


def test_an_acceptance_the_collector_missed_is_sent_again(tmp_path: Path) -> None:
    gate = CaptureGate(FLEET)
    tries: list[NoticeAck] = []
    sent = threading.Event()

    def flaky(ack: NoticeAck) -> None:
        tries.append(ack)
        if len(tries) < 3:
            raise OSError("collector unreachable")
        sent.set()

    keeper = NoticeKeeper(gate, tmp_path / "ack.json", report=flaky, retry_seconds=0.1).start()
    try:
        assert keeper.accept({"digest": notice_digest(FLEET)})["ok"]
        assert gate.decide(EDITOR).capture == "all"  # recording does not wait for the collector
        assert sent.wait(10) and len(tries) == 3
    finally:
        keeper.stop()
    stored = load_ack(tmp_path / "ack.json")
    assert stored is not None and stored.reported and keeper.last_report_error is None


def _cli_env(home: Path) -> dict[str, str]:
    import os

    (home / "run").mkdir(parents=True, mode=0o700)
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }


def _notice_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demotrace.cli", "notice", *args], env=env, capture_output=True, text=True
    )


def test_without_a_recorder_a_researcher_accepts_locally_and_a_fleet_device_tells_the_collector(
    tmp_path: Path,
) -> None:
    researcher = _cli_env(tmp_path / "researcher")
    policy_file = tmp_path / "mine.toml"
    policy_file.write_text('mode = "allowlist"\nallow_apps = ["gedit"]\n')
    shown = _notice_cli(researcher, "--policy", str(policy_file))
    assert shown.returncode == 0 and "apps: gedit" in shown.stdout and "Not accepted yet" in shown.stdout
    accepted = _notice_cli(researcher, "--policy", str(policy_file), "--accept")
    assert accepted.returncode == 0 and "Accepted" in accepted.stdout, accepted.stderr
    ack = load_ack(tmp_path / "researcher" / "config" / "demotrace" / "notice-ack.json")
    mine = CapturePolicy(mode="allowlist", allow_apps=["gedit"])
    assert ack is not None and acceptance_holds(ack, mine) and not ack.reported
    assert "You have accepted" in _notice_cli(researcher, "--policy", str(policy_file)).stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("mode = [")
    refused = _notice_cli(researcher, "--policy", str(broken), "--accept")
    assert (
        refused.returncode == 2 and "Traceback" not in refused.stderr and "not valid TOML" in refused.stderr
    )

    fleet_device = _cli_env(tmp_path / "employee")
    with (
        ServerThread(create_app(tmp_path / "collector", admin_token=ADMIN)) as server,
        httpx.Client(timeout=30) as client,
    ):
        device_id, token = Live(server.url, tmp_path / "collector", client).enroll("laptop")
        save_credentials(
            DeviceCredentials(server.url, device_id, token),
            tmp_path / "employee" / "config" / "demotrace" / "device.json",
        )
        accepted = _notice_cli(fleet_device, "--accept")
        assert accepted.returncode == 0 and "gnome-terminal-server" in accepted.stdout, accepted.stderr
        listed = httpx.get(
            f"{server.url}{ADMIN_NOTICE_ACKS_PATH}", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
        assert [(row["device_id"], row["current_policy_notice"]) for row in listed] == [(device_id, True)]
    stored = load_ack(tmp_path / "employee" / "config" / "demotrace" / "notice-ack.json")
    assert stored is not None and stored.reported


def test_the_consent_migration_goes_down_and_up_again(database_url: str) -> None:
    import sqlalchemy
    from alembic import command

    from demotrace.collector.store.migrate import _config, upgrade_database

    engine = sqlalchemy.create_engine(database_url)
    try:
        upgrade_database(engine)
        assert "notice_acks" in sqlalchemy.inspect(engine).get_table_names()
        with engine.begin() as connection:
            command.downgrade(_config(connection), "0004_consent-1")
        assert "notice_acks" not in sqlalchemy.inspect(engine).get_table_names()
        with engine.begin() as connection:
            command.upgrade(_config(connection), "head")
        assert "notice_acks" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()
