"""The one way the device talks HTTP to its collector: enrolment, uploads and the policy all go through it.

``CollectorClient`` holds the collector's base URL (checked and normalised once), the device's token and
user agent, and turns a failure to reach the collector into one error, ``CollectorUnreachable``. A
refusal is read one way too: ``refusal_detail`` (the collector's sentence) and ``refusal_code`` (its
stable short code), both from ``demotrace.protocol``'s error body.
"""

from __future__ import annotations

import ipaddress
import logging
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from demotrace import __version__
from demotrace.protocol import error_summary, parse_error_body

USER_AGENT = f"demotrace/{__version__}"

log = logging.getLogger(__name__)


class TransportError(Exception):
    """Enrolment, credentials, upload or policy sync failed; the message says why and what to do."""


class CollectorUnreachable(TransportError):
    """No answer from the collector: refused connection, unknown host, timeout, broken TLS."""


def normalise_server_url(server_url: str) -> str:
    """``server_url`` without blanks or a trailing slash; warns when plain HTTP leaves this host."""
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"server URL must look like https://host[:port], not {server_url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        log.warning("collector %s is plain HTTP: the device token and records travel unencrypted", server_url)
    return server_url.strip().rstrip("/")


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def refusal_detail(response: httpx.Response) -> str:
    """The collector's ``detail`` for a refusal, else its code, else the start of the body."""
    return error_summary(response.content)


def refusal_code(response: httpx.Response) -> str | None:
    """The collector's short ``error`` code for a refusal (``exempt``, ``upload_corrupted``...), if any."""
    body = parse_error_body(response.content)
    return body.error or None if body is not None else None


class CollectorClient:
    """Requests to one collector, with the user agent (and the device token, if given) on each.

    Given an ``httpx.Client`` it borrows it (the caller closes it); otherwise it opens its own, reused
    for every request, and close() releases it: a new client per request built a TLS context (~20 ms
    of CPU) and a new connection each time.
    """

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = normalise_server_url(server_url)
        self.headers = {"User-Agent": USER_AGENT}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        content: bytes | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request to ``path`` (a ``demotrace.protocol`` path); CollectorUnreachable if no answer came."""
        try:
            return self._http.request(
                method,
                f"{self.base_url}{path}",
                content=content,
                json=json,
                headers={**self.headers, **(headers or {})},
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise CollectorUnreachable(
                f"cannot reach collector {self.base_url}: {type(error).__name__}: {error}"
            ) from error

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
