"""TLS between device and collector: HTTPS from a test CA, trusted only when the agent is told to,
plain HTTP refused off loopback on both sides, and a certificate swapped by SIGHUP."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_collector_server import run_server_command
from test_uploader import some_records, stored_records, wait_until
from tls_ca import TestCA, served_serial

from demotrace.collector.app import create_app
from demotrace.collector.server import ServerConfigError, ServerThread, check_transport_exposure
from demotrace.collector.tls import server_context
from demotrace.demo.run import free_port
from demotrace.device.client import TransportError, UntrustedCollector, normalise_server_url
from demotrace.device.enrollment import (
    DeviceCredentials,
    EnrollmentError,
    enroll,
    load_credentials,
    save_credentials,
)
from demotrace.device.spool import Spool
from demotrace.device.uploader import Uploader, UploadError


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


@pytest.fixture
def https_server(ca: TestCA, tmp_path: Path) -> Iterator[tuple[ServerThread, Path]]:
    cert = ca.issue()
    data_dir = tmp_path / "collector"
    app = create_app(data_dir)
    with ServerThread(app, tls=server_context(cert.certfile, cert.keyfile)) as server:
        yield server, data_dir


def test_https_upload_to_a_collector_signed_by_a_ca_the_agent_was_told_to_trust(
    https_server: tuple[ServerThread, Path], ca: TestCA, tmp_path: Path
) -> None:
    server, data_dir = https_server
    assert server.url.startswith("https://127.0.0.1:")
    # Without the CA: a clear refusal that says what to give, at once (no silent retry).
    with pytest.raises(EnrollmentError, match=r"not trusted.*--ca-bundle"):
        enroll(server.url, "laptop")

    device = enroll(server.url, "laptop", ca_bundle=str(ca.ca_file))
    saved = save_credentials(device, tmp_path / "device.json")
    assert load_credentials(saved).ca_bundle == str(ca.ca_file)  # the trust is kept for every request
    spool = Spool(tmp_path / "spool", os.urandom(32))
    records = some_records("tls")
    spool.append(records)
    uploader = Uploader(spool, load_credentials(saved))
    try:
        assert uploader.upload_pending(timeout=30) == len(records)
    finally:
        uploader.close()
    assert len(stored_records(data_dir)) == len(records)

    # The same device without its CA: uploads wait, and the reason is the certificate, in words.
    spool.append(some_records("tls-2"))
    untrusting = Uploader(spool, DeviceCredentials(device.server_url, device.device_id, device.token))
    try:
        with pytest.raises(UploadError, match=r"certificate of collector .* is not trusted"):
            untrusting.upload_pending(timeout=10)
        assert untrusting.last_error is not None and "--ca-bundle" in untrusting.last_error
    finally:
        untrusting.close()
    assert spool.pending_count() == len(records)  # nothing lost
    spool.close()


def test_a_certificate_from_another_ca_is_refused(
    https_server: tuple[ServerThread, Path], tmp_path: Path
) -> None:
    server, _ = https_server
    stranger = TestCA(tmp_path / "other", name="someone else's CA")
    with pytest.raises(EnrollmentError, match="not trusted"):
        enroll(server.url, "laptop", ca_bundle=str(stranger.ca_file))


def test_the_client_refuses_plain_http_off_loopback() -> None:
    with pytest.raises(TransportError, match="refusing plain HTTP"):
        normalise_server_url("http://10.1.2.3:8765")
    assert normalise_server_url("http://10.1.2.3:8765/", allow_plain_http=True) == "http://10.1.2.3:8765"
    assert normalise_server_url("http://127.0.0.1:8765/") == "http://127.0.0.1:8765"
    assert normalise_server_url("https://collector.example.org/") == "https://collector.example.org"
    assert issubclass(UntrustedCollector, TransportError)


def test_the_server_refuses_plain_http_off_loopback(tmp_path: Path) -> None:
    check_transport_exposure("127.0.0.1", None, None, allow_plain_http=False)
    check_transport_exposure("0.0.0.0", tmp_path / "c.pem", tmp_path / "k.pem", allow_plain_http=False)
    check_transport_exposure("0.0.0.0", None, None, allow_plain_http=True)
    with pytest.raises(ServerConfigError, match=r"refusing to serve plain HTTP on 0\.0\.0\.0"):
        check_transport_exposure("0.0.0.0", None, None, allow_plain_http=False)
    with pytest.raises(ServerConfigError, match="both --certfile and --keyfile"):
        check_transport_exposure("127.0.0.1", tmp_path / "c.pem", None, allow_plain_http=False)

    data = tmp_path / "data"
    result = run_server_command(
        "--data", str(data), "--host", "0.0.0.0", "--port", str(free_port()), "--enrollment-secret", "s"
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "refusing to serve plain HTTP on 0.0.0.0" in message and "--certfile" in message
    assert not data.exists()


def test_sighup_reloads_the_certificate(ca: TestCA, tmp_path: Path) -> None:
    first, second = ca.issue("first"), ca.issue("second")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(first.certfile, live_cert)
    shutil.copy(first.keyfile, live_key)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demotrace.cli",
            "server",
            "--data",
            str(tmp_path / "d"),
            "--port",
            str(port),
            "--certfile",
            str(live_cert),
            "--keyfile",
            str(live_key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={key: value for key, value in os.environ.items() if not key.startswith("DEMOTRACE_")},
    )
    url = f"https://127.0.0.1:{port}/v1/health"
    trusting = ssl.create_default_context(cafile=str(ca.ca_file))

    def answers() -> bool:
        try:
            return httpx.get(url, verify=trusting, timeout=2).status_code == 200
        except httpx.ConnectError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return False

    try:
        wait_until(answers, timeout=60)
        assert served_serial("127.0.0.1", port, ca.ca_file) == first.serial
        # A broken pair is refused and the old certificate stays in service.
        live_key.write_text("not a key")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: process.poll() is not None or _stderr_has(process, b"not reloaded"), timeout=30)
        assert process.poll() is None
        assert served_serial("127.0.0.1", port, ca.ca_file) == first.serial
        shutil.copy(second.certfile, live_cert)
        shutil.copy(second.keyfile, live_key)
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: served_serial("127.0.0.1", port, ca.ca_file) == second.serial, timeout=30)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(30)


_seen: dict[int, bytes] = {}


def _stderr_has(process: subprocess.Popen[bytes], text: bytes) -> bool:
    """Reads what the server logged so far, without blocking (tests may poll)."""
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    chunk = process.stderr.read() or b""
    _seen[process.pid] = _seen.get(process.pid, b"") + chunk
    return text in _seen[process.pid]
