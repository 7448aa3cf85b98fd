"""Exemptions on the command line, the employee's side: ``demotrace exemption request|status``.

Registered by ``register_exemption_commands(app)`` in demotrace/cli/main.py; admins decide in
``demotrace admin exemptions`` (demotrace/cli/admin.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from demotrace.cli.shared import CredentialsOption, console, fail

exemption_app = typer.Typer(
    help="Ask not to be recorded on this device, and see the answer.", no_args_is_help=True
)


def _credentials(path: Path | None) -> Any:
    """The device's credentials: ``path``, else those of ``enroll`` (device.json), else those ``up`` made
    with its local collector (the default collector folder)."""
    from demotrace.demo.local import local_credentials_path
    from demotrace.device.enrollment import CredentialsError, default_credentials_path, load_credentials
    from demotrace.device.paths import default_collector_dir

    if path is None and not default_credentials_path().exists():
        made_by_up = local_credentials_path(default_collector_dir())
        if not made_by_up.exists():
            raise fail(
                "this device is not enrolled with a collector: run demotrace enroll --server URL, "
                "or demotrace up (it enrols with its own local collector)"
            )
        path = made_by_up
    try:
        return load_credentials(path)
    except CredentialsError as error:
        raise fail(str(error)) from error


def _unreachable(error: Exception, credentials: Path | None) -> typer.Exit:
    """The collector's error; when it is `up`'s own collector (no device.json), that `up` must run."""
    from demotrace.device.enrollment import default_credentials_path

    if credentials is None and not default_credentials_path().exists():
        return fail(f"{error} (this device is enrolled with the collector of demotrace up: is up running?)")
    return fail(str(error))


@exemption_app.command("request")
def exemption_request(
    reason: Annotated[str, typer.Option("--reason", help="Why this device should not be recorded.")],
    delete_collected: Annotated[
        bool,
        typer.Option("--delete-collected", help="Also delete everything the collector already has from it."),
    ] = False,
    credentials: CredentialsOption = None,
) -> None:
    """Ask to be exempt from recording; an admin approves or denies it."""
    from demotrace.device.policy_sync import PolicySyncError, request_exemption

    device = _credentials(credentials)
    try:
        answer = request_exemption(device, reason, delete_collected)
    except PolicySyncError as error:
        raise _unreachable(error, credentials) from error
    console.print(
        f"Exemption request {answer['id']} sent ({'with' if delete_collected else 'without'} deletion of "
        "collected data). Recording stops on this device as soon as an admin approves it."
    )


@exemption_app.command("status")
def exemption_status(credentials: CredentialsOption = None) -> None:
    """Whether this device is exempt, or where its request stands."""
    from demotrace.device.policy_sync import PolicySyncError, fetch_device_policy

    device = _credentials(credentials)
    try:
        answer = fetch_device_policy(device)
    except PolicySyncError as error:
        raise _unreachable(error, credentials) from error
    if answer.exempt:
        console.print("[bold green]exempt[/]: nothing is recorded on this device.")
    elif answer.exemption_status == "none":
        console.print("No exemption requested: this device records where the policy allows it.")
    else:
        meaning = {
            "requested": "waiting for an admin's decision; recording goes on until it is approved",
            "denied": "this device records where the policy allows it; you may ask again",
        }.get(answer.exemption_status, "")
        console.print(
            f"Exemption request {answer.exemption_request_id}: [bold]{answer.exemption_status}[/]"
            + (f" ({meaning})." if meaning else ".")
        )


def register_exemption_commands(app: typer.Typer) -> None:
    """Add ``exemption`` to the main ``demotrace`` command."""
    app.add_typer(exemption_app, name="exemption")
