"""Enrol this device with a collector, and keep the credentials it answers with (0600, never shown)."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec

from demotrace.device.client import CollectorClient, CollectorUnreachable, TransportError, refusal_detail
from demotrace.device.paths import config_dir, write_private_file
from demotrace.protocol import ENROLL_PATH, ENROLLMENT_SECRET_HEADER

CREDENTIALS_FILE = "device.json"

log = logging.getLogger(__name__)


class EnrollmentError(TransportError):
    pass


class CredentialsError(TransportError):
    pass


class DeviceCredentials(msgspec.Struct, frozen=True):
    server_url: str
    device_id: str
    token: str
    person_id: str | None = None  # the pseudonymous person the collector enrolled this device for


class _EnrollResponse(msgspec.Struct):
    device_id: str
    token: str
    person_id: str | None = None


def default_credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def enroll(
    server_url: str,
    device_name: str,
    secret: str | None = None,
    *,
    person_id: str | None = None,
    timeout: float = 30.0,
) -> DeviceCredentials:
    """Register this device with a collector and return the credentials to upload with.

    ``person_id``: the pseudonym of the person this device is for (from the portal or IT), so that their
    exemptions and deletions cover it with their other devices; without it the device is a person of
    its own."""
    headers = {ENROLLMENT_SECRET_HEADER: secret} if secret is not None else {}
    body: dict[str, str] = {"device_name": device_name}
    if person_id is not None:
        body["person_id"] = person_id
    with CollectorClient(server_url) as client:
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
        server_url=base_url, device_id=answer.device_id, token=answer.token, person_id=answer.person_id
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
