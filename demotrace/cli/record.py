"""Recording on this device: ``record`` (the agent) and ``enroll`` (its upload credentials)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer

from demotrace.cli.shared import CredentialsOption, KeyOption, SpoolOption, fail, stderr
from demotrace.device.paths import config_dir


def local_device_id() -> str:
    """A random id for this device, made once; never derived from the host or user name."""
    path = config_dir() / "device_id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    device_id = f"dev-{uuid.uuid4().hex[:16]}"
    path.write_text(device_id + "\n")
    return device_id


def record(
    spool: SpoolOption = Path("spool"),
    server: Annotated[
        str | None, typer.Option("--server", help="Collector URL: fleet policy, uploads in the background.")
    ] = None,
    key: KeyOption = None,
    credentials: CredentialsOption = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="Capture policy (TOML). Default: the fleet's, or every app but the denylist."
        ),
    ] = None,
) -> None:
    """Record this display ($DISPLAY) until SIGINT/SIGTERM, then flush and exit."""
    from demotrace.device.agent import AgentConfig, encode_config

    if not os.environ.get("DISPLAY"):
        raise fail("no $DISPLAY: record needs an X server (try `demotrace demo` on a machine without one)")
    config = AgentConfig(
        spool=spool,
        key=key,
        config_dir=config_dir(),
        device_id=local_device_id(),
        server=server,
        credentials=credentials,
        policy=policy,
    )
    # The recording runs in a fresh interpreter, same process id (signals and supervisors see no
    # difference), without this CLI's libraries: see demotrace/device/agent.py.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", "-m", "demotrace.device.agent", encode_config(config)])


def enroll(
    server: Annotated[str, typer.Option("--server", help="Collector URL.")],
    name: Annotated[str | None, typer.Option("--name", help="A label for this device.")] = None,
    secret: Annotated[str | None, typer.Option("--secret", envvar="DEMOTRACE_ENROLLMENT_SECRET")] = None,
    credentials: CredentialsOption = None,
    person: Annotated[
        str | None,
        typer.Option(
            "--person",
            envvar="DEMOTRACE_PERSON_ID",
            help="Your pseudonymous person id (from the portal or IT): exemptions and deletions then "
            "cover all your devices. Not an e-mail address.",
        ),
    ] = None,
) -> None:
    """Enroll this device with a collector; it gets its own upload token."""
    import httpx

    from demotrace.device.enrollment import default_credentials_path, save_credentials
    from demotrace.device.enrollment import enroll as enroll_device

    try:
        device = enroll_device(server, device_name=name or local_device_id(), secret=secret, person_id=person)
    except httpx.HTTPError as error:
        raise fail(f"cannot enroll with {server}: {error}") from error
    path = credentials or default_credentials_path()
    save_credentials(device, path)
    stderr.print(f"enrolled as {device.device_id} for person {device.person_id}; credentials in {path}")


def register_record_commands(app: typer.Typer) -> None:
    """Add record and enroll to the main ``demotrace`` command."""
    app.command("record")(record)
    app.command("enroll")(enroll)
