"""No client can stall or blow up the collector: slow bodies are cut off and free their slot, every
device has its own concurrency and rate, enrolment and admin logins are throttled, and hostile uploads
stay within the configured memory."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_collector import Live, make_batch, packed

from bench.collector_memory import MiB, measure
from demotrace.collector.app import create_app
from demotrace.collector.limits import CollectorLimits, RateLimiter
from demotrace.collector.server import ServerThread
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

FAST_CUTOFF = CollectorLimits(body_grace_seconds=1.0, min_body_bytes_per_second=1024)


def start(tmp_path: Path, limits: CollectorLimits, **options: object) -> tuple[ServerThread, Live]:
    data_dir = tmp_path / "data"
    server = ServerThread(create_app(data_dir, limits=limits, **options)).start()  # type: ignore[arg-type]
    return server, Live(server.url, data_dir, httpx.Client(timeout=30))


@pytest.fixture
def slow_cutoff(tmp_path: Path) -> Iterator[tuple[ServerThread, Live]]:
    server, live = start(tmp_path, FAST_CUTOFF)
    yield server, live
    live.client.close()
    server.stop()


def open_slow_upload(url: str, token: str, declared: int = 1000) -> socket.socket:
    """A device that declares a body and sends one byte of it (a slow-loris)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        (
            f"PUT /v1/records/slow-{time.monotonic_ns()} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: {RECORD_MEDIA_TYPE}\r\n"
            f"Content-Length: {declared}\r\n\r\nx"
        ).encode()
    )
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """What the server says before it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_sixteen_slow_connections_do_not_block_a_normal_device(
    slow_cutoff: tuple[ServerThread, Live],
) -> None:
    server, live = slow_cutoff
    slow_tokens = [live.enroll(f"slow-{index}")[1] for index in range(16)]
    _, token = live.enroll("normal")
    sockets = [open_slow_upload(server.url, slow) for slow in slow_tokens]
    try:
        time.sleep(0.3)  # the 16 bodies are being waited for
        record = make_batch("normal", 0)
        answer = live.put(token, record_id_of(record), packed(record))
        assert answer.status_code == 201, answer.text  # at once: no slot is held by a slow body
        # Each slow body is cut off with 408 and its connection closed.
        for sock in sockets:
            reply = read_answer(sock)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
            assert b"body_too_slow" in reply
    finally:
        for sock in sockets:
            sock.close()
    guards = server._server.config.app.state.guards
    assert guards.ingest_slots.in_use == 0 and guards.memory.in_use == 0


def test_a_client_that_hangs_up_mid_body_is_one_log_line(
    slow_cutoff: tuple[ServerThread, Live], caplog: pytest.LogCaptureFixture
) -> None:
    server, live = slow_cutoff
    _, token = live.enroll()
    uvicorn_logger = logging.getLogger("uvicorn")  # does not propagate to the root logger
    uvicorn_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            open_slow_upload(server.url, token, declared=100_000).close()
            record = make_batch("after", 0)
            assert live.put(token, record_id_of(record), packed(record)).status_code == 201
            time.sleep(0.3)
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    refused = [entry for entry in caplog.records if "hung up" in entry.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.INFO
    assert not [entry for entry in caplog.records if entry.exc_info or entry.levelno >= logging.ERROR]


def test_each_device_has_its_own_upload_concurrency(slow_cutoff: tuple[ServerThread, Live]) -> None:
    server, live = slow_cutoff
    _, greedy = live.enroll("greedy")
    _, other = live.enroll("other")
    sockets = [open_slow_upload(server.url, greedy) for _ in range(2)]
    try:
        time.sleep(0.3)
        record = make_batch("greedy", 0)
        third = live.put(greedy, record_id_of(record), packed(record))
        assert third.status_code == 429 and third.json()["error"] == "rate_limited"
        assert int(third.headers["Retry-After"]) >= 1
        assert live.put(other, record_id_of(record), packed(record)).status_code == 201
    finally:
        for sock in sockets:
            sock.close()


def test_device_request_rate_enrolment_and_admin_logins_are_throttled(tmp_path: Path) -> None:
    limits = CollectorLimits(
        device_requests_per_second=0.5,
        device_request_burst=3,
        enrollments_per_minute=1,
        enrollment_burst=3,
        admin_failures_per_minute=1,
        admin_failure_burst=2,
    )
    server, live = start(tmp_path, limits, admin_token="the-admin-token-for-tests")
    try:
        _, token = live.enroll("a")
        _, other = live.enroll("b")
        statuses = []
        for seq in range(4):
            record = make_batch("rate", seq)
            statuses.append(live.put(token, record_id_of(record), packed(record)).status_code)
        assert statuses == [201, 201, 201, 429]
        record = make_batch("other", 0)
        assert live.put(other, record_id_of(record), packed(record)).status_code == 201  # its own rate

        live.enroll("c")
        fourth = live.client.post(f"{server.url}/v1/enroll", json={"device_name": "d"})
        assert fourth.status_code == 429 and "Retry-After" in fourth.headers

        def audit(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return live.client.get(f"{server.url}/v1/admin/audit", headers=headers).status_code

        assert audit("the-admin-token-for-tests") == 200
        assert [audit("guess-1"), audit("guess-2")] == [401, 401]
        # Guessing is now refused before any check, even with the right token, until time passes.
        assert audit("guess-3") == 429
        assert audit("the-admin-token-for-tests") == 429
    finally:
        live.client.close()
        server.stop()


def test_rate_limiter_refills_and_forgets() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    limiter.take("a", "x")
    limiter.take("a", "x")
    assert limiter.wait_needed("a") == pytest.approx(0.5)
    now[0] += 0.5
    limiter.take("a", "x")
    assert limiter.wait_needed("b") == 0


def test_bloated_frames_stay_within_the_configured_memory() -> None:
    """Eight valid 63 MiB zero frames (2 KB each on the wire) at once, and two bombs, against a
    collector with a 160 MiB ingest budget: its whole resident set grows by about the budget."""
    budget_mb = 160
    result = measure(uploads=8, budget_mb=budget_mb)
    assert result.stored == 8  # every one arrives, the ones told to wait included
    assert result.refusals and set(result.refusals) == {503}
    assert result.bombs == [413, 400]
    growth = result.peak_rss - result.baseline_rss
    # The budget plus what the interpreter, sockets and threads add under load (measured: ~10 MiB).
    assert growth < (budget_mb + 48) * MiB, f"grew by {growth / MiB:.0f} MiB"
    assert result.after_rss - result.baseline_rss < 48 * MiB
