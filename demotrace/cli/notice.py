"""``demotrace notice``: read the recording notice for the policy in force, and accept it (``--accept``).

With a recorder running, it asks the recorder (which knows the policy in force) and accepts through its
control socket; without one, it makes the notice from ``--policy``, or the fleet's policy when this device
is enrolled, or the local default, and stores the acceptance where the recorder reads it at its start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from demotrace.cli.control import SocketOption
from demotrace.cli.shared import CredentialsOption, console, fail, stderr


def _from_recorder(socket_path: Path | None, accept: bool) -> bool:
    """Show (and accept) the notice through a running recorder; False when none runs."""
    from demotrace.device.control_client import ControlClient
    from demotrace.device.control_protocol import ControlError, RecorderNotRunning

    client = ControlClient(socket_path)
    try:
        answer = client.request("notice")
        if not answer.get("ok"):
            raise fail(str(answer.get("error")))
        _show(answer["text"], answer["digest"])
        if not accept:
            _say_state(bool(answer.get("accepted")))
            return True
        accepted = client.request("accept_notice", digest=answer["digest"])
    except RecorderNotRunning:
        return False
    except ControlError as error:
        raise fail(str(error)) from error
    if not accepted.get("ok"):
        raise fail(str(accepted.get("error")))
    console.print("Accepted: recording may start where the policy allows it.")
    return True


def _show(text: str, digest: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    console.print(f"\n(notice {digest})", markup=False, highlight=False)


def _say_state(accepted: bool) -> None:
    if accepted:
        console.print("You have accepted this notice.")
    else:
        console.print("Not accepted yet: nothing is recorded until you run `demotrace notice --accept`.")


def _policy_in_force(policy_file: Path | None, credentials: Path | None) -> tuple[Any, Any]:
    """(the policy, the device credentials to report to, or None) without a running recorder."""
    from demotrace.device.enrollment import CredentialsError, default_credentials_path, load_credentials
    from demotrace.device.policy_sync import PolicySyncError, fetch_device_policy
    from demotrace.policy import DEFAULT_LOCAL_POLICY, PolicyError, load_policy, parse_policy

    try:
        if policy_file is not None:
            return load_policy(policy_file), None
        path = credentials or default_credentials_path()
        if not path.exists():
            return DEFAULT_LOCAL_POLICY, None
        device = load_credentials(path)
        answer = fetch_device_policy(device)
        return parse_policy(answer.policy, source="collector policy"), device
    except (PolicyError, CredentialsError, PolicySyncError) as error:
        raise fail(f"cannot tell which policy is in force: {error}") from error


def notice(
    accept: Annotated[
        bool, typer.Option("--accept", help="Accept the notice shown (recording may then start).")
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="The policy you record with (`record --policy`), when no recorder runs."
        ),
    ] = None,
    credentials: CredentialsOption = None,
    socket_path: SocketOption = None,
) -> None:
    """Show what is recorded, what never is, and your rights; nothing is recorded until you accept."""
    import msgspec

    from demotrace.device.consent import NoticeError, accept_notice, default_ack_path, load_ack, save_ack
    from demotrace.device.policy_sync import PolicySyncError, report_notice_ack
    from demotrace.notice import acceptance_holds, notice_digest, notice_text

    if policy is None and _from_recorder(socket_path, accept):
        return
    in_force, device = _policy_in_force(policy, credentials)
    digest = notice_digest(in_force)
    _show(notice_text(in_force), digest)
    path = default_ack_path()
    if not accept:
        _say_state(acceptance_holds(load_ack(path), in_force))
        return
    try:
        ack = accept_notice(path, in_force, digest)
    except (NoticeError, OSError) as error:
        raise fail(str(error)) from error
    console.print(f"Accepted; stored in {escape(str(path))}.", soft_wrap=True)
    _tell_recorder(socket_path)
    if device is not None:
        try:
            report_notice_ack(device, ack)
        except PolicySyncError as error:
            stderr.print(
                f"[yellow]note:[/] the collector has not got it yet ({escape(str(error))}); "
                "the recorder sends it when it runs",
                soft_wrap=True,
            )
            return
        save_ack(path, msgspec.structs.replace(ack, reported=True))


def _tell_recorder(socket_path: Path | None) -> None:
    """A recorder running with ``--policy`` reads the stored acceptance again (none running: nothing)."""
    from demotrace.device.control_client import ControlClient
    from demotrace.device.control_protocol import ControlError

    with contextlib.suppress(ControlError):  # not running: it reads the acceptance when it starts
        ControlClient(socket_path).request("notice_reload")


def register_notice_commands(app: typer.Typer) -> None:
    app.command("notice")(notice)
