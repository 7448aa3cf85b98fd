"""The one way the device talks HTTP to its collector: enrolment, uploads and the policy all go through it.

``CollectorClient`` holds the collector's base URL (checked and normalised once), the device's token and
user agent, and turns a failure to reach the collector into one error, ``CollectorUnreachable``
(``UntrustedCollector`` when its certificate does not verify: retrying cannot fix that). It verifies
the collector's certificate against the system's CAs, or only the ``ca_bundle`` it is given, and
refuses plain HTTP to any host but this one unless ``allow_plain_http`` says so. A refusal is read one
way too: ``refusal_detail`` (the collector's sentence) and ``refusal_code`` (its
stable short code), both from ``demotrace.protocol``'s error body.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
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


class UntrustedCollector(CollectorUnreachable):
    """The collector's TLS certificate does not verify against the CAs this device trusts."""


def normalise_server_url(server_url: str, allow_plain_http: bool = False) -> str:
    """``server_url`` without blanks or a trailing slash. Plain HTTP to another host is refused
    (TransportError) unless ``allow_plain_http``: the token and the recordings would cross in clear."""
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"server URL must look like https://host[:port], not {server_url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        if not allow_plain_http:
            raise TransportError(
                f"refusing plain HTTP to {server_url}: the device token and recordings would cross the "
                "network unencrypted. Use https://, or --allow-plain-http on a network you trust"
            )
        log.warning("collector %s is plain HTTP: the device token and records travel unencrypted", server_url)
    return server_url.strip().rstrip("/")


def trust_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The TLS context that verifies collectors: the system's CAs, or only those in ``ca_bundle``."""
    if ca_bundle is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise TransportError(f"cannot read the CA bundle {ca_bundle}: {error}") from error


def untrusted_certificate_message(error: BaseException, base_url: str) -> str | None:
    """A clear sentence when ``error`` (or what caused it) is a failed certificate verification."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            reason = getattr(seen, "verify_message", "") or str(seen)
            return (
                f"the certificate of collector {base_url} is not trusted ({reason}): give the CA "
                "bundle that signed it with --ca-bundle (or DEMOTRACE_CA_BUNDLE)"
            )
        seen = seen.__cause__ or seen.__context__
    return None


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
        ca_bundle: str | None = None,
        allow_plain_http: bool = False,
    ) -> None:
        self.base_url = normalise_server_url(server_url, allow_plain_http)
        self.headers = {"User-Agent": USER_AGENT}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, verify=trust_context(ca_bundle))

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
            untrusted = untrusted_certificate_message(error, self.base_url)
            if untrusted is not None:
                raise UntrustedCollector(untrusted) from error
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
