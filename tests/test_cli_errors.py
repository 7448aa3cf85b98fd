"""Mistakes a user can make, each answered by one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.demo.desktop import VirtualDesktop
from demotrace.demo.run import free_port


def home_env(home: Path, **more: str) -> dict[str, str]:
    """A user of their own: HOME and the XDG folders under ``home``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home / "run"), **more)
    return env


def demotrace(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demotrace.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_enroll_with_an_unreachable_collector(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(demotrace("enroll", "--server", url, env=home_env(tmp_path)))
    assert line.startswith(f"error: cannot enroll: cannot reach collector {url}: ConnectError")
    not_a_url = one_error_line(demotrace("enroll", "--server", "collector:8765", env=home_env(tmp_path)))
    assert "server URL must look like https://host[:port]" in not_a_url


def test_enroll_twice_refuses_to_make_a_second_device(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    with ServerThread(create_app(tmp_path / "collector")) as server:
        first = demotrace("enroll", "--server", server.url, env=env)
        assert first.returncode == 0, first.stderr
        credentials = tmp_path / ".config" / "demotrace" / "device.json"
        before = credentials.read_text()
        line = one_error_line(demotrace("enroll", "--server", server.url, env=env))
        assert f"this device is already enrolled with {server.url} as " in line
        assert line.endswith("enrolling again makes it a new device: add --force to do that")
        assert credentials.read_text() == before
        again = demotrace("enroll", "--server", server.url, "--force", env=env)
        assert again.returncode == 0, again.stderr
        assert credentials.read_text() != before


def test_up_after_a_first_run_on_another_port_keeps_its_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demotrace.demo.local import ensure_local_credentials, local_credentials_path
    from demotrace.device.enrollment import load_credentials

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    data = tmp_path / "collector"
    with ServerThread(create_app(data)) as first:
        path = ensure_local_credentials(data, first.url)
    device = load_credentials(path)
    with ServerThread(create_app(data)) as second:  # the same collector folder, another port
        assert ensure_local_credentials(data, second.url) == path
    moved = load_credentials(path)
    assert (moved.device_id, moved.token) == (device.device_id, device.token)
    assert moved.server_url == second.url
    other = tmp_path / "other-collector"
    with ServerThread(create_app(other)) as third:  # another folder: a device of its own there
        assert ensure_local_credentials(other, third.url) == local_credentials_path(other) != path


@pytest.mark.x11
def test_tray_on_a_desktop_without_a_system_tray(tmp_path: Path, desktop: VirtualDesktop) -> None:
    line = one_error_line(demotrace("tray", env=home_env(tmp_path, DISPLAY=desktop.display)))
    assert line.startswith("error: this desktop has no system tray")


def test_commands_that_need_a_desktop_say_so(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    env.pop("DISPLAY", None)
    for command in (["record"], ["up"], ["tray"]):
        assert "no $DISPLAY" in one_error_line(demotrace(*command, env=env))


def test_exemption_commands_use_the_enrolment_up_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not enrolled at all: one line saying how to enrol. After `up` (which enrols with its own collector,
    not in device.json), `exemption status` asks that collector."""
    env = home_env(tmp_path)
    line = one_error_line(demotrace("exemption", "status", env=env))
    assert line == (
        "error: this device is not enrolled with a collector: run demotrace enroll --server URL, "
        "or demotrace up (it enrols with its own local collector)"
    )
    from demotrace.demo.local import ensure_local_credentials

    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    data = tmp_path / ".local" / "share" / "demotrace" / "collector"  # up's default collector folder
    with ServerThread(create_app(data)) as server:
        ensure_local_credentials(data, server.url)
        answer = demotrace("exemption", "status", env=env)
        assert answer.returncode == 0, answer.stderr
        assert " ".join(answer.stdout.split()) == (
            "No exemption requested: this device records where the policy allows it."
        )
    gone = one_error_line(demotrace("exemption", "status", env=env))  # up has stopped: its collector too
    assert gone.startswith("error: cannot reach collector ") and gone.endswith(
        "(this device is enrolled with the collector of demotrace up: is up running?)"
    )
