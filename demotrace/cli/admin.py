"""Collector administration on the command line: ``demotrace admin exemptions|policy|devices|audit``.

Admins decide the exemption requests employees send (demotrace/cli/exemption.py), set the fleet policy and
read the audit log. Registered by ``register_admin_commands(app)`` in demotrace/cli/main.py.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from demotrace.cli.shared import console, fail, stderr
from demotrace.protocol import (
    ADMIN_AUDIT_PATH,
    ADMIN_DEVICE_REVOKE_PATH,
    ADMIN_DEVICES_PATH,
    ADMIN_EXEMPTION_DECISION_PATH,
    ADMIN_EXEMPTIONS_PATH,
    ADMIN_POLICY_PATH,
    error_summary,
    path_for,
)

admin_app = typer.Typer(
    help="Collector administration: exemptions, fleet policy, audit log.", no_args_is_help=True
)
admin_exemptions_app = typer.Typer(help="Exemption requests: list, approve, deny.", no_args_is_help=True)
admin_policy_app = typer.Typer(help="The policy every device of the fleet follows.", no_args_is_help=True)
admin_app.add_typer(admin_exemptions_app, name="exemptions")
admin_devices_app = typer.Typer(help="Enrolled devices: list, revoke.", no_args_is_help=True)
admin_app.add_typer(admin_policy_app, name="policy")
admin_app.add_typer(admin_devices_app, name="devices")

ServerOption = Annotated[
    str, typer.Option("--server", metavar="URL", envvar="DEMOTRACE_SERVER", help="Collector URL.")
]
AdminTokenOption = Annotated[
    str,
    typer.Option("--admin-token", envvar="DEMOTRACE_ADMIN_TOKEN", help="The collector's admin token."),
]


def _when(wall: float | None) -> str:
    if wall is None:
        return "-"
    return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


class AdminClient:
    """The collector's admin API, with errors turned into messages."""

    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        # The audit log names a token caller by its token's digest (admin:token:<8 hex>).
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        from demotrace.device.client import trust_context, untrusted_certificate_message

        try:
            # The collector's CA, if not a public one: DEMOTRACE_CA_BUNDLE, as for the agent.
            verify = trust_context(os.environ.get("DEMOTRACE_CA_BUNDLE") or None)
            with httpx.Client(verify=verify, timeout=self.timeout) as client:
                response = client.request(method, f"{self.server}{path}", headers=self.headers, **kwargs)
        except httpx.HTTPError as error:
            message = untrusted_certificate_message(error, self.server)
            raise fail(message or f"cannot reach collector {self.server}: {error}") from error
        if response.status_code >= 400:
            detail = error_summary(response.content, limit=300)
            raise fail(f"collector answered {response.status_code}: {detail}")
        return response.json()


@admin_exemptions_app.command("list")
def admin_list(
    server: ServerOption,
    admin_token: AdminTokenOption,
    status: Annotated[
        str | None, typer.Option("--status", help="Only requested, approved or denied.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List exemption requests, oldest first."""
    params = {"status": status} if status else {}
    requests = AdminClient(server, admin_token).call("GET", ADMIN_EXEMPTIONS_PATH, params=params)
    if as_json:
        print(json.dumps(requests, indent=2))
        return
    table = Table("id", "device", "status", "delete data", "requested", "decided by", "reason")
    for request in requests:
        table.add_row(
            str(request["id"]),
            request["device_id"],
            request["status"],
            "yes" if request["delete_collected"] else "no",
            _when(request["requested_at"]),
            request["decided_by"] or "-",
            request["reason"],
        )
    console.print(table)


def _decide(server: str, token: str, request_id: int, verb: str) -> None:
    path = path_for(ADMIN_EXEMPTION_DECISION_PATH, request_id=str(request_id), decision=verb)
    answer = AdminClient(server, token).call("POST", path)
    console.print(f"Exemption request {request_id} {answer['status']} for device {answer['device_id']}.")
    if "deleted_records" in answer:
        console.print(
            f"Deleted {answer['deleted_records']} records ({answer['deleted_blobs']} stored blobs) "
            "collected from that device."
        )


@admin_exemptions_app.command("approve")
def admin_approve(
    request_id: Annotated[int, typer.Argument(help="Request id (from `list`).")],
    server: ServerOption,
    admin_token: AdminTokenOption,
) -> None:
    """Approve a request: the device stops recording, and its data goes if it asked for that."""
    _decide(server, admin_token, request_id, "approve")


@admin_exemptions_app.command("deny")
def admin_deny(
    request_id: Annotated[int, typer.Argument(help="Request id (from `list`).")],
    server: ServerOption,
    admin_token: AdminTokenOption,
) -> None:
    """Deny a request (the employee may ask again)."""
    _decide(server, admin_token, request_id, "deny")


@admin_policy_app.command("set")
def admin_policy_set(
    file: Annotated[Path, typer.Argument(help="Policy TOML file.", exists=True, dir_okay=False)],
    server: ServerOption,
    admin_token: AdminTokenOption,
    confirm_widening: Annotated[
        bool,
        typer.Option("--confirm-widening", help="Confirm a policy that captures more than the current one."),
    ] = False,
) -> None:
    """Check a policy file and make it the fleet's policy (devices pick it up within a minute).

    A policy must name its mode and the lists that mode relies on; one that captures more than the
    current policy (more apps, fewer denied, a longer retention...) is refused until confirmed."""
    from demotrace.policy import PolicyError, load_policy

    try:
        load_policy(file)  # the collector checks too; this gives the message before any network
    except PolicyError as error:
        raise fail(str(error)) from error
    client = AdminClient(server, admin_token)
    params = {"confirm_widening": "true"} if confirm_widening else {}
    answer = client.call("PUT", ADMIN_POLICY_PATH, content=file.read_bytes(), params=params)
    console.print(f"Fleet policy set ({answer['mode']} mode).")
    for widening in answer.get("widens", []):
        console.print(f"  widens: {widening}")


@admin_devices_app.command("list")
def admin_devices_list(
    server: ServerOption,
    admin_token: AdminTokenOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List enrolled devices, oldest first."""
    devices = AdminClient(server, admin_token).call("GET", ADMIN_DEVICES_PATH)
    if as_json:
        print(json.dumps(devices, indent=2))
        return
    table = Table("device", "name", "status", "agent", "last seen", "enrolled")
    for device in devices:
        table.add_row(
            device["device_id"],
            device["name"],
            device.get("status", "-"),
            device.get("agent_version") or "-",
            _when(device.get("last_seen")),
            _when(device["enrolled_at"]),
        )
    console.print(table)


@admin_devices_app.command("revoke")
def admin_devices_revoke(
    device_id: Annotated[str, typer.Argument(help="Device id (from `devices list`).")],
    server: ServerOption,
    admin_token: AdminTokenOption,
) -> None:
    """Revoke a device: its token is refused from now on (a lost or stolen laptop)."""
    path = path_for(ADMIN_DEVICE_REVOKE_PATH, device_id=device_id)
    AdminClient(server, admin_token).call("POST", path)
    console.print(f"Device {device_id} revoked: its uploads are refused from now on.")


@admin_policy_app.command("get")
def admin_policy_get(
    server: ServerOption,
    admin_token: AdminTokenOption,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the policy TOML to this file instead of stdout.")
    ] = None,
) -> None:
    """Show the fleet's policy as TOML (edit it and give it back with `admin policy set`)."""
    answer = AdminClient(server, admin_token).call("GET", ADMIN_POLICY_PATH)
    text = str(answer["policy"])
    source = answer.get("policy_source")
    where = "the built-in default" if source == "default" else f"set {_when(answer.get('policy_updated_at'))}"
    if out is not None:
        out.write_text(text)
        stderr.print(f"fleet policy ({escape(where)}) written to {escape(str(out))}", soft_wrap=True)
        return
    stderr.print(f"# fleet policy: {escape(where)}", soft_wrap=True)
    print(text, end="" if text.endswith("\n") else "\n")  # plain text, ready for `> policy.toml`


@admin_app.command("audit")
def admin_audit(
    server: ServerOption,
    admin_token: AdminTokenOption,
    limit: Annotated[int, typer.Option("--limit", help="How many of the newest entries.")] = 200,
    device: Annotated[str | None, typer.Option("--device", help="Only this device id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Read the audit log: every request, decision, deletion and policy change."""
    params: dict[str, Any] = {"limit": limit}
    if device:
        params["device_id"] = device
    entries = AdminClient(server, admin_token).call("GET", ADMIN_AUDIT_PATH, params=params)
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("when", "who", "what", "device", "details")
    for entry in entries:
        table.add_row(
            _when(entry["at"]),
            entry["actor"],
            entry["action"],
            entry["device_id"] or "-",
            json.dumps(entry["details"], sort_keys=True),
        )
    console.print(table)


def register_admin_commands(app: typer.Typer) -> None:
    """Add ``admin`` to the main ``demotrace`` command."""
    app.add_typer(admin_app, name="admin")
