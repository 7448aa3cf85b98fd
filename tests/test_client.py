"""The one collector client: base URLs, refusals read one way, and an unreachable collector."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from demotrace.collector.server import reserve_port
from demotrace.device.client import (
    USER_AGENT,
    CollectorClient,
    CollectorUnreachable,
    TransportError,
    is_loopback,
    normalise_server_url,
    refusal_code,
    refusal_detail,
)
from demotrace.protocol import HEALTH_PATH, error_body


def test_server_urls_are_normalised_and_checked() -> None:
    assert normalise_server_url(" https://collector.example:8443/ ") == "https://collector.example:8443"
    for bad in ("collector.example", "ftp://collector.example", "https://"):
        with pytest.raises(TransportError, match="https://host"):
            normalise_server_url(bad)


def test_loopback_hosts() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("collector.example") and not is_loopback("10.0.0.1")


def test_a_refusal_reads_the_collectors_error_body() -> None:
    refused = httpx.Response(403, json=error_body("exempt", "this device is exempt"))
    assert refusal_detail(refused) == "this device is exempt"
    assert refusal_code(refused) == "exempt"
    proxy_page = httpx.Response(502, content=b"<html>Bad Gateway</html>")
    assert refusal_detail(proxy_page) == "<html>Bad Gateway</html>"
    assert refusal_code(proxy_page) is None


class HeaderRecorder(BaseHTTPRequestHandler):
    """A real HTTP server's handler that answers 200 and keeps each request's path and headers."""

    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, dict(self.headers.items())))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_requests_carry_the_user_agent_and_token() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HeaderRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        with httpx.Client() as http:
            client = CollectorClient(f"http://{host!s}:{port}/", "t0ken", http=http)
            assert client.request("GET", HEALTH_PATH, timeout=5).status_code == 200
            client.close()  # borrowed: the caller's client stays open
            assert not http.is_closed
    finally:
        server.shutdown()
        server.server_close()
    path, headers = HeaderRecorder.seen[-1]
    assert path == HEALTH_PATH
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Authorization"] == "Bearer t0ken"


def test_an_unreachable_collector_is_one_error() -> None:
    sock = reserve_port()
    host, port = sock.getsockname()
    try:
        with (
            CollectorClient(f"http://{host}:{port}") as client,
            pytest.raises(CollectorUnreachable, match="cannot reach collector"),
        ):
            client.request("GET", HEALTH_PATH, timeout=5)
    finally:
        sock.close()
