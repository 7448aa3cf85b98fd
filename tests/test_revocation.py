"""Revoking a device (its token refused at once), rotating the admin token without a restart, and a
conflict answer that says nothing about other devices' records."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_collector import Live, make_batch, packed
from typer.testing import CliRunner

from demotrace.cli.main import app as cli
from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.protocol import record_id_of

OLD_ADMIN = "first-admin-token-0123456789"
NEW_ADMIN = "second-admin-token-9876543210"


def test_a_revoked_device_is_refused_at_once_and_others_go_on(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with (
        ServerThread(create_app(data_dir, admin_token=OLD_ADMIN)) as server,
        httpx.Client(timeout=30) as client,
    ):
        live = Live(server.url, data_dir, client)
        stolen_id, stolen = live.enroll("stolen laptop")
        _, kept = live.enroll("other laptop")
        record = make_batch("before", 0)
        assert live.put(stolen, record_id_of(record), packed(record)).status_code == 201

        runner = CliRunner()
        listed = runner.invoke(
            cli, ["admin", "devices", "list", "--server", server.url, "--admin-token", OLD_ADMIN, "--json"]
        )
        assert listed.exit_code == 0 and stolen_id in listed.output
        revoked = runner.invoke(
            cli, ["admin", "devices", "revoke", stolen_id, "--server", server.url, "--admin-token", OLD_ADMIN]
        )
        assert revoked.exit_code == 0, revoked.output

        after = make_batch("after", 0)
        refused = live.put(stolen, record_id_of(after), packed(after))
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        assert live.put(kept, record_id_of(after), packed(after)).status_code == 201
        audit = client.get(
            f"{server.url}/v1/admin/audit", headers={"Authorization": f"Bearer {OLD_ADMIN}"}
        ).json()
        assert [entry["device_id"] for entry in audit if entry["action"] == "device_revoked"] == [stolen_id]
        unknown = client.post(
            f"{server.url}/v1/admin/devices/nope/revoke", headers={"Authorization": f"Bearer {OLD_ADMIN}"}
        )
        assert unknown.status_code == 404


def test_the_admin_token_rotates_without_a_restart(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-tokens"
    token_file.write_text(f"# admin tokens, one a line\n{OLD_ADMIN}\n")
    app = create_app(tmp_path / "data", admin_token_file=token_file)
    with ServerThread(app) as server, httpx.Client(timeout=30) as client:

        def audit_status(token: str) -> int:
            return client.get(
                f"{server.url}/v1/admin/audit", headers={"Authorization": f"Bearer {token}"}
            ).status_code

        assert audit_status(OLD_ADMIN) == 200
        token_file.write_text(f"{OLD_ADMIN}\n{NEW_ADMIN}\n")  # overlap while tools move over
        assert (audit_status(OLD_ADMIN), audit_status(NEW_ADMIN)) == (200, 200)
        token_file.write_text(f"{NEW_ADMIN}\n")
        assert (audit_status(OLD_ADMIN), audit_status(NEW_ADMIN)) == (401, 200)
        token_file.write_text("")  # emptied by mistake: every token refused, not the API opened
        assert audit_status(NEW_ADMIN) == 401


def test_a_conflict_does_not_tell_whose_record_it_is(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerThread(create_app(data_dir)) as server, httpx.Client(timeout=30) as client:
        live = Live(server.url, data_dir, client)
        _, owner = live.enroll("owner")
        _, prober = live.enroll("prober")
        record = make_batch("s", 0)
        assert live.put(owner, record_id_of(record), packed(record)).status_code == 201
        other_device = live.put(prober, record_id_of(record), packed(record))
        changed = make_batch("s", 0)
        changed.events.pop()
        same_device = live.put(owner, record_id_of(record), packed(changed))
    assert other_device.status_code == same_device.status_code == 409
    assert other_device.json() == same_device.json()  # one answer for both: nothing about other devices
    assert "another device" not in other_device.text


def test_devices_list_shows_whole_ids_and_revoke_takes_a_unique_start(tmp_path: Path) -> None:
    """What `devices list` shows on a narrow terminal can be given to `revoke` as is, or just its start."""
    data_dir = tmp_path / "data"
    with (
        ServerThread(create_app(data_dir, admin_token=OLD_ADMIN)) as server,
        httpx.Client(timeout=30) as client,
    ):
        live = Live(server.url, data_dir, client)
        lost_id, _ = live.enroll("lost laptop")
        kept_id, _ = live.enroll("desk")
        admin = ["--server", server.url, "--admin-token", OLD_ADMIN]
        runner = CliRunner()
        listed = runner.invoke(cli, ["admin", "devices", "list", *admin], terminal_width=80)
        assert listed.exit_code == 0, listed.output
        assert lost_id in listed.output and kept_id in listed.output  # whole, never cut with "…"

        common = 0
        while lost_id[common] == kept_id[common]:
            common += 1
        revoked = runner.invoke(cli, ["admin", "devices", "revoke", lost_id[: common + 1], *admin])
        assert revoked.exit_code == 0, revoked.output
        assert f"Device {lost_id} revoked" in " ".join(revoked.output.split())

        for given, says in [
            (
                "zz",
                "error: no enrolled device has an id starting with 'zz': see demotrace admin devices list",
            ),
            ("", "error: give a device id: see demotrace admin devices list"),
        ]:
            refused = runner.invoke(cli, ["admin", "devices", "revoke", given, *admin])
            assert refused.exit_code == 2
            assert " ".join(refused.output.split()) == says
        audit = client.get(
            f"{server.url}/v1/admin/audit", headers={"Authorization": f"Bearer {OLD_ADMIN}"}
        ).json()
        assert [entry["device_id"] for entry in audit if entry["action"] == "device_revoked"] == [lost_id]


def test_a_start_shared_by_two_devices_is_refused() -> None:
    import typer

    from demotrace.cli.admin import _one_device

    assert _one_device("ab", ["abc1", "ff"]) == "abc1"
    assert _one_device("abc1", ["abc1", "abc12"]) == "abc1"  # a whole id is never ambiguous
    with pytest.raises(typer.Exit):
        _one_device("ab", ["abc1", "abd2"])
