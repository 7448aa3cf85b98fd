"""Recording on this device: ``record`` (the agent) and ``enroll`` (its upload credentials)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from demotrace.cli.shared import CredentialsOption, KeyOption, SpoolOption, fail, stderr
from demotrace.device.paths import config_dir, default_spool_dir

CaBundleOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        envvar="DEMOTRACE_CA_BUNDLE",
        exists=True,
        dir_okay=False,
        help="PEM file of the CA that signed the collector's certificate (trusted instead of the system's).",
    ),
]
AllowPlainHttpOption = Annotated[
    bool,
    typer.Option("--allow-plain-http", help="Allow http:// to a collector on another host (unencrypted)."),
]


def record(
    spool: SpoolOption = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", metavar="URL", help="Collector URL: fleet policy, uploads in the background."
        ),
    ] = None,
    key: KeyOption = None,
    credentials: CredentialsOption = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="Capture policy (TOML). Default: the fleet's, or every app but the denylist."
        ),
    ] = None,
    ca_bundle: CaBundleOption = None,
    allow_plain_http: AllowPlainHttpOption = False,
    spool_quota_mb: Annotated[
        float | None,
        typer.Option(
            "--spool-quota-mb",
            min=1,
            help="Most the spool may hold; past it the oldest unsent frames go (events never do).",
        ),
    ] = None,
) -> None:
    """Record this display ($DISPLAY) until SIGINT/SIGTERM, then flush and exit."""
    from demotrace.device.agent import AgentConfig, encode_config
    from demotrace.device.enrollment import local_device_id

    if not os.environ.get("DISPLAY"):
        raise fail("no $DISPLAY: record needs an X server (try `demotrace demo` on a machine without one)")
    config = AgentConfig(
        spool=spool or default_spool_dir(),
        key=key,
        config_dir=config_dir(),
        device_id=local_device_id(),
        server=server,
        credentials=credentials,
        policy=policy,
        ca_bundle=ca_bundle.resolve() if ca_bundle is not None else None,
        allow_plain_http=allow_plain_http,
        spool_quota_bytes=int(spool_quota_mb * 1024 * 1024) if spool_quota_mb else None,
    )
    # The recording runs in a fresh interpreter, same process id (signals and supervisors see no
    # difference), without this CLI's libraries: see demotrace/device/agent.py.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", "-m", "demotrace.device.agent", encode_config(config)])


def enroll(
    server: Annotated[
        str, typer.Option("--server", metavar="URL", help="Collector URL, like https://collector:8765.")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="A label for this device (default: its random id).")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="DEMOTRACE_ENROLLMENT_SECRET",
            help="The collector's enrollment secret, from its admin (or $DEMOTRACE_ENROLLMENT_SECRET).",
        ),
    ] = None,
    credentials: CredentialsOption = None,
    ca_bundle: CaBundleOption = None,
    allow_plain_http: AllowPlainHttpOption = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Enroll again though this device is enrolled: it becomes a new device."),
    ] = False,
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
    """Enroll this device with a collector; it gets its own upload token (and keeps --ca-bundle)."""
    from demotrace.device.client import TransportError
    from demotrace.device.enrollment import (
        default_credentials_path,
        load_credentials,
        local_device_id,
        save_credentials,
    )
    from demotrace.device.enrollment import enroll as enroll_device

    path = credentials or default_credentials_path()
    if path.exists() and not force:
        try:
            kept = load_credentials(path)
            known = f"with {kept.server_url} as {kept.device_id}"
        except TransportError:
            known = "(its credentials file is unreadable)"
        raise fail(
            f"this device is already enrolled {known}, credentials in {path}; enrolling again makes it "
            "a new device: add --force to do that"
        )
    try:
        device = enroll_device(
            server,
            device_name=name or local_device_id(),
            secret=secret,
            ca_bundle=str(ca_bundle.resolve()) if ca_bundle is not None else None,
            allow_plain_http=allow_plain_http,
            person_id=person,
        )
    except TransportError as error:
        raise fail(f"cannot enroll: {error}") from error
    save_credentials(device, path)
    stderr.print(
        f"enrolled as {device.device_id} for person {device.person_id}; credentials in {escape(str(path))}",
        soft_wrap=True,
    )


def register_record_commands(app: typer.Typer) -> None:
    """Add record and enroll to the main ``demotrace`` command."""
    app.command("record")(record)
    app.command("enroll")(enroll)
