"""Enrolment with a real collector (uvicorn on 127.0.0.1, SQLite) and the credentials file it leaves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread, reserve_port
from demotrace.device.enrollment import (
    CredentialsError,
    EnrollmentError,
    default_credentials_path,
    enroll,
    load_credentials,
    save_credentials,
)


def test_enroll_and_credentials_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ServerThread(create_app(tmp_path / "collector")) as server:
        credentials = enroll(server.url + "/", "laptop-1")
    assert credentials.server_url == server.url
    assert credentials.device_id and credentials.token

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = save_credentials(credentials)
    assert path == default_credentials_path() == tmp_path / "config" / "demotrace" / "device.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_credentials() == credentials
    assert load_credentials(path) == credentials
    save_credentials(credentials, path)  # overwriting keeps the mode and leaves no temp file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["device.json"]


def test_missing_or_broken_credentials(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="enrol"):
        load_credentials(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CredentialsError):
        load_credentials(tmp_path / "bad.json")


def test_enroll_with_a_secret(tmp_path: Path) -> None:
    with ServerThread(create_app(tmp_path / "c", enrollment_secret="s3cret")) as server:
        with pytest.raises(EnrollmentError, match="401"):
            enroll(server.url, "laptop")
        with pytest.raises(EnrollmentError, match="secret"):
            enroll(server.url, "laptop", secret="wrong")
        assert enroll(server.url, "laptop", secret="s3cret").device_id


def test_enroll_with_no_server() -> None:
    sock = reserve_port()
    host, port = sock.getsockname()
    try:
        with pytest.raises(EnrollmentError, match="cannot reach"):
            enroll(f"http://{host}:{port}", "laptop", timeout=5)
    finally:
        sock.close()
