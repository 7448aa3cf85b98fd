"""The collector's certificate: loaded once, swapped in place on SIGHUP, and the refusal to serve in clear.

The live ``ssl.SSLContext`` is the one uvicorn listens with; ``load_cert_chain`` on it changes the
certificate every later handshake presents, so a renewed certificate (certbot, an internal CA) is
picked up without dropping a connection. A new pair is first loaded into a throwaway context: a
mismatched or half-written pair is logged and the old one stays in force.
"""

from __future__ import annotations

import logging
import signal
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """The certificate or key cannot be used; the message says which file and why."""


def check_pair(certfile: Path, keyfile: Path) -> None:
    """Raise TlsConfigError unless ``certfile`` and ``keyfile`` load together as a server certificate."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise TlsConfigError(f"cannot use certificate {certfile} with key {keyfile}: {error}") from error


def server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context presenting ``certfile``."""
    check_pair(certfile, keyfile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


class CertificateReloader:
    """Reloads a live server context from its files; ``install()`` makes SIGHUP do it."""

    def __init__(self, context: ssl.SSLContext, certfile: Path, keyfile: Path) -> None:
        self.context = context
        self.certfile = certfile
        self.keyfile = keyfile
        self.reloads = 0

    def reload(self) -> bool:
        """Present the files' current pair from the next handshake on; False (logged) if it is unusable."""
        try:
            check_pair(self.certfile, self.keyfile)
            self.context.load_cert_chain(self.certfile, self.keyfile)
        except (TlsConfigError, OSError, ssl.SSLError) as error:
            log.error("certificate not reloaded, the previous one stays in use: %s", error)
            return False
        self.reloads += 1
        log.warning("certificate reloaded from %s", self.certfile)
        return True

    def install(self) -> None:
        """Reload on SIGHUP (main thread only, as every Python signal handler)."""
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self.reload())
