"""The person's own identifiers: their login, full name and host name, which the recorder knows and which
are on screen all day (``root@vm`` in every shell prompt, a name in a title bar). Matched as whole
tokens in any case, as ``<USER>`` and ``<HOST>``.

The full name comes from the account's GECOS field (its first comma-separated part) and is matched as a
whole phrase; its parts alone are not (a first name is a common word on any screen). Values shorter than
two characters, and names every machine has (``localhost``), are left out.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from demotrace.redact.detectors.base import Match

# Names that identify no one.
NOT_IDENTIFYING = frozenset({"localhost", "localhost.localdomain", "localdomain", "ip6-localhost"})
MIN_VALUE_CHARS = 2


@dataclass(frozen=True)
class Identity:
    """Who is recorded on this device, as text that may show up on their screen or in what they type."""

    logins: tuple[str, ...] = ()
    full_names: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


def _kept(values: Iterable[str]) -> tuple[str, ...]:
    kept = {value.strip() for value in values if value and len(value.strip()) >= MIN_VALUE_CHARS}
    return tuple(sorted(value for value in kept if value.lower() not in NOT_IDENTIFYING))


@functools.cache
def this_identity() -> Identity:
    """The identity of the user running this process, on this host (read once)."""
    import pwd

    logins: list[str] = []
    names: list[str] = []
    try:
        account = pwd.getpwuid(os.geteuid())
        logins.append(account.pw_name)
        names.append(account.pw_gecos.split(",")[0])
    except KeyError:  # a uid without an account (some containers)
        pass
    logins.append(os.environ.get("USER", ""))
    host = socket.gethostname()
    hosts = [host, host.split(".")[0]]
    return Identity(_kept(logins), _kept(names), _kept(hosts))


# On screen, values this long also match inside a token: OCR reads the "@" of "root@vm" as "G" or "B"
# ("rootGvm"), which leaves no boundary; a shorter value ("vm") inside a word would be chance.
SCREEN_INSIDE_TOKEN_CHARS = 4


class KnownValueDetector:
    """Given values as whole tokens (no letter or digit touching either end), in any case; spaces inside
    a value match any run of whitespace. With ``inside_tokens``, values of
    :data:`SCREEN_INSIDE_TOKEN_CHARS` or more characters match inside longer tokens too (screen text)."""

    def __init__(self, kind: str, values: Iterable[str], *, inside_tokens: bool = False) -> None:
        self._kind = kind
        ordered = sorted(set(values), key=len, reverse=True)  # the longest first: "Jane Doe" before "Jane"
        alternatives = []
        for value in ordered:
            pattern = r"\s+".join(re.escape(part) for part in value.split())
            if not (inside_tokens and len(value) >= SCREEN_INSIDE_TOKEN_CHARS):
                pattern = rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])"
            alternatives.append(pattern)
        self._pattern = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None

    @property
    def kind(self) -> str:
        return self._kind

    def find(self, text: str) -> list[Match]:
        if self._pattern is None:
            return []
        return [Match(found.start(), found.end(), self._kind) for found in self._pattern.finditer(text)]


def identity_detectors(identity: Identity | None = None, *, screen: bool = False) -> list[KnownValueDetector]:
    """``<USER>`` for the login and full name, ``<HOST>`` for the host name (of this process if None);
    ``screen``: also inside tokens OCR glued together (see :data:`SCREEN_INSIDE_TOKEN_CHARS`)."""
    chosen = this_identity() if identity is None else identity
    return [
        KnownValueDetector("USER", _kept([*chosen.logins, *chosen.full_names]), inside_tokens=screen),
        KnownValueDetector("HOST", _kept(chosen.hosts), inside_tokens=screen),
    ]


__all__ = ["Identity", "KnownValueDetector", "identity_detectors", "this_identity"]
