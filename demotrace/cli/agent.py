"""``demotrace agent install`` / ``uninstall``: the recorder as a systemd user service, the tray at login."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from demotrace.cli.record import AllowPlainHttpOption, CaBundleOption
from demotrace.cli.shared import CredentialsOption, console, fail

agent_app = typer.Typer(help="Install the agent to start at login, or remove it.", no_args_is_help=True)


def _say(text: str) -> None:
    console.print(escape(text), soft_wrap=True, highlight=False)


def _enrolled_server(
    server: str | None,
    secret: str | None,
    credentials: Path | None,
    ca_bundle: Path | None,
    allow_plain_http: bool,
    person: str | None,
) -> str | None:
    """The collector this device uploads to, enrolling it first when it is not yet (None: local only)."""
    from demotrace.device.client import TransportError
    from demotrace.device.enrollment import (
        default_credentials_path,
        enroll,
        load_credentials,
        local_device_id,
        save_credentials,
    )

    path = credentials or default_credentials_path()
    try:
        if path.exists():
            kept = load_credentials(path)
            if server is not None and kept.server_url.rstrip("/") != server.rstrip("/"):
                raise fail(
                    f"this device is enrolled with {kept.server_url}, not {server}: `demotrace enroll "
                    f"--server {server} --force` first, or install without --server"
                )
            _say(f"already enrolled with {kept.server_url} as {kept.device_id} ({path})")
            return kept.server_url
        if server is None:
            return None
        device = enroll(
            server,
            device_name=local_device_id(),
            secret=secret,
            ca_bundle=str(ca_bundle.absolute()) if ca_bundle is not None else None,
            allow_plain_http=allow_plain_http,
            person_id=person,
        )
    except TransportError as error:
        raise fail(f"cannot enroll: {error}") from error
    save_credentials(device, path)
    _say(f"enrolled with {device.server_url} as {device.device_id}; credentials in {path}")
    return device.server_url


@agent_app.command("install")
def install(
    server: Annotated[
        str | None,
        typer.Option(
            "--server", metavar="URL", help="Collector URL (default: the one this device is enrolled with)."
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="DEMOTRACE_ENROLLMENT_SECRET",
            help="The collector's enrollment secret, from IT.",
        ),
    ] = None,
    person: Annotated[
        str | None,
        typer.Option("--person", envvar="DEMOTRACE_PERSON_ID", help="Your pseudonymous person id (from IT)."),
    ] = None,
    credentials: CredentialsOption = None,
    ca_bundle: CaBundleOption = None,
    allow_plain_http: AllowPlainHttpOption = False,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", exists=True, dir_okay=False, help="Record with this local policy (researchers)."
        ),
    ] = None,
    portal: Annotated[
        str | None, typer.Option("--portal", metavar="URL", help="The portal the tray's menu opens.")
    ] = None,
    enable: Annotated[
        bool,
        typer.Option("--enable/--no-enable", help="Enable the service with systemctl --user (default: yes)."),
    ] = True,
) -> None:
    """Enroll (with --server/--secret, unless enrolled), write the recorder's systemd user unit and the
    tray's autostart entry, and enable the unit. Nothing is recorded until you accept the notice."""
    from demotrace.device.install import (
        RECORDER_UNIT,
        InstallError,
        agent_commands,
        installed_command,
        systemctl_user,
        write_agent_files,
    )

    try:
        program = installed_command()
    except InstallError as error:
        raise fail(str(error)) from error
    collector = _enrolled_server(server, secret, credentials, ca_bundle, allow_plain_http, person)
    if collector is None:
        _say("no collector: the recorder keeps what it records on this device (spool), nothing is uploaded")
    commands = agent_commands(
        program, server=collector, credentials=credentials, ca_bundle=ca_bundle, policy=policy, portal=portal
    )
    try:
        files = write_agent_files(commands)
    except OSError as error:
        raise fail(f"cannot write the agent's files: {error}") from error
    _say(f"wrote {files.unit}: runs `{' '.join(commands.recorder)}` in your desktop session")
    _say(f"wrote {files.autostart}: runs `{' '.join(commands.tray)}` at login")
    if enable:
        problem = systemctl_user("daemon-reload") or systemctl_user("enable", RECORDER_UNIT)
        if problem is None:
            _say(f"enabled {RECORDER_UNIT}: it starts with your next desktop session")
        else:
            _say(f"could not enable it now ({problem}): run `systemctl --user enable --now {RECORDER_UNIT}`")
    _say(
        "before anything is recorded, read and accept the notice: `demotrace notice`, then "
        "`demotrace notice --accept` (or the tray's menu)"
    )


@agent_app.command("uninstall")
def uninstall(
    remove_data: Annotated[
        bool,
        typer.Option(
            "--remove-data", help="Also delete the spool, keys, credentials and state kept on this device."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting data.")] = False,
) -> None:
    """Stop and remove the recorder's unit and the tray's autostart entry (data only with --remove-data)."""
    from demotrace.device.install import RECORDER_UNIT, remove_agent_files, systemctl_user
    from demotrace.device.paths import config_dir, data_dir, state_dir

    problem = systemctl_user("disable", "--now", RECORDER_UNIT)
    if problem is not None:
        _say(f"note: systemctl --user could not stop or disable {RECORDER_UNIT} ({problem})")
    removed = remove_agent_files()
    for path in removed:
        _say(f"removed {path}")
    if not removed:
        _say("the agent was not installed (no unit, no autostart entry)")
    if problem is None:
        systemctl_user("daemon-reload")
    if not remove_data:
        kept = f"{data_dir()}, {config_dir()}, {state_dir()}"
        _say(f"kept the data on this device: {kept} (delete it with --remove-data)")
        return
    folders = [folder for folder in (data_dir(), config_dir(), state_dir()) if folder.exists()]
    if not folders:
        _say("no local data to remove")
        return
    listed = ", ".join(str(folder) for folder in folders)
    if not yes and not typer.confirm(
        f"Delete {listed} (spool not uploaded yet, keys, credentials)?", default=False
    ):
        raise fail("nothing deleted", 1)
    for folder in folders:
        shutil.rmtree(folder)
        _say(f"deleted {folder}")


def register_agent_commands(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")
