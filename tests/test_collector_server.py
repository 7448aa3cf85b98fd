"""Running the collector (collector/server.py): who may enrol, and the ``demotrace server`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_uploader import wait_until

from bench.services import free_port
from demotrace.collector.server import ServerConfigError, check_enrollment_exposure, is_loopback_host

# --- who may enrol ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LocalHost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)
    check_enrollment_exposure(host, None, open_enrollment=False)  # the demo and tests need no secret


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.1.2.3", "collector.example.org", "127.0.0.1.nip.io"]
)
def test_a_reachable_address_needs_a_secret_or_explicitly_open_enrolment(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ServerConfigError, match=r"--enrollment-secret.*--open-enrollment"):
        check_enrollment_exposure(host, None, open_enrollment=False)
    check_enrollment_exposure(host, "s3cret", open_enrollment=False)
    check_enrollment_exposure(host, None, open_enrollment=True)
    with pytest.raises(ServerConfigError, match="contradict"):
        check_enrollment_exposure(host, "s3cret", open_enrollment=True)


def run_server_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEMOTRACE_")}
    return subprocess.run(
        [sys.executable, "-m", "demotrace.cli", "server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # a server that started instead of refusing fails the test here
        env=env,
    )


def test_the_server_command_refuses_open_enrolment_on_the_network(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_server_command("--data", str(data), "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "refusing to listen on 0.0.0.0 without an enrollment secret" in message
    assert "--enrollment-secret" in message and "--open-enrollment" in message
    assert not data.exists()  # refused before anything was created

    both = run_server_command(
        "--data", str(data), "--host", "0.0.0.0", "--enrollment-secret", "s", "--open-enrollment"
    )
    assert both.returncode == 2 and "contradict" in both.stderr


def test_the_server_command_on_loopback_still_needs_no_secret(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "demotrace.cli", "server", "--data", str(tmp_path / "d"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={key: value for key, value in os.environ.items() if not key.startswith("DEMOTRACE_")},
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return False

    try:
        wait_until(answers, timeout=60)
        enrolled = httpx.post(f"{url}/v1/enroll", json={"device_name": "laptop"}, timeout=10)
        assert enrolled.status_code == 201, enrolled.text
    finally:
        process.terminate()
        process.wait(30)
