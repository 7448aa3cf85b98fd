"""Enrol this device with a collector, and keep the credentials it answers with (0600, never shown)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import httpx
import msgspec

from demotrace.device.client import CollectorClient, CollectorUnreachable, TransportError, refusal_detail
from demotrace.device.paths import config_dir
from demotrace.files import write_private_file
from demotrace.protocol import ENROLL_PATH, ENROLLMENT_SECRET_HEADER

CREDENTIALS_FILE = "device.json"

log = logging.getLogger(__name__)


class EnrollmentError(TransportError):
    pass


class CredentialsError(TransportError):
    pass


class DeviceCredentials(msgspec.Struct, frozen=True):
    """What the device needs to talk to its collector; ``ca_bundle`` (a PEM file) is the only CA it
    trusts for it, when set, and ``allow_plain_http`` lets it use http:// to another host."""

    server_url: str
    device_id: str
    token: str
    ca_bundle: str | None = None
    allow_plain_http: bool = False
    person_id: str | None = None  # the pseudonymous person the collector enrolled this device for


def collector_client(
    credentials: DeviceCredentials, *, http: httpx.Client | None = None, timeout: float = 30.0
) -> CollectorClient:
    """A client for the device's collector, with its token and its trust settings."""
    return CollectorClient(
        credentials.server_url,
        credentials.token,
        http=http,
        timeout=timeout,
        ca_bundle=credentials.ca_bundle,
        allow_plain_http=credentials.allow_plain_http,
    )


class _EnrollResponse(msgspec.Struct):
    device_id: str
    token: str
    person_id: str | None = None


def default_credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def local_device_id() -> str:
    """A random id for this device, made once; never derived from the host or user name."""
    path = config_dir() / "device_id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    device_id = f"dev-{uuid.uuid4().hex[:16]}"
    path.write_text(device_id + "\n")
    return device_id


def enroll(
    server_url: str,
    device_name: str,
    secret: str | None = None,
    *,
    person_id: str | None = None,
    timeout: float = 30.0,
    ca_bundle: str | None = None,
    allow_plain_http: bool = False,
) -> DeviceCredentials:
    """Register this device with a collector and return the credentials to upload with (they keep
    ``ca_bundle`` and ``allow_plain_http`` for every later request).

    ``person_id``: the pseudonym of the person this device is for (from the portal or IT), so that their
    exemptions and deletions cover it with their other devices; without it the device is a person of
    its own."""
    headers = {ENROLLMENT_SECRET_HEADER: secret} if secret is not None else {}
    body: dict[str, str] = {"device_name": device_name}
    if person_id is not None:
        body["person_id"] = person_id
    with CollectorClient(server_url, ca_bundle=ca_bundle, allow_plain_http=allow_plain_http) as client:
        base_url = client.base_url
        try:
            response = client.request("POST", ENROLL_PATH, json=body, headers=headers, timeout=timeout)
        except CollectorUnreachable as error:
            raise EnrollmentError(str(error)) from error
    if response.status_code != 201:
        raise EnrollmentError(
            f"collector {base_url} refused enrolment ({response.status_code}): {refusal_detail(response)}"
        )
    try:
        answer = msgspec.json.decode(response.content, type=_EnrollResponse)
    except msgspec.DecodeError as error:
        raise EnrollmentError(f"collector {base_url} gave an unreadable enrolment answer: {error}") from error
    return DeviceCredentials(
        server_url=base_url,
        device_id=answer.device_id,
        token=answer.token,
        ca_bundle=ca_bundle,
        allow_plain_http=allow_plain_http,
        person_id=answer.person_id,
    )


def save_credentials(credentials: DeviceCredentials, path: Path | None = None) -> Path:
    """Write the credentials as JSON, readable by the owner only (0600, folder 0700); returns the path."""
    path = path or default_credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # 0600 from the start: the token is never readable by others, not even briefly.
    write_private_file(
        path, msgspec.json.format(msgspec.json.encode(credentials)) + b"\n", temp_prefix=".device-"
    )
    return path


def load_credentials(path: Path | None = None) -> DeviceCredentials:
    path = path or default_credentials_path()
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise CredentialsError(f"no device credentials at {path}: enrol this device first") from error
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): it holds the device token", path, mode & 0o777)
    try:
        return msgspec.json.decode(data, type=DeviceCredentials)
    except msgspec.DecodeError as error:
        raise CredentialsError(f"device credentials {path} are unreadable: {error}") from error
