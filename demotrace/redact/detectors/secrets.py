"""Credentials with a recognisable shape: vendor API keys and tokens (by their published prefixes), JSON
Web Tokens and PEM private-key blocks."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import ClassVar

from demotrace.redact.detectors import Match, PatternDetector
from demotrace.redact.detectors.high_entropy import shannon_entropy

# Token characters on either side mean we are inside a longer token, not at the start of a key.
_NOT_AFTER = r"(?<![A-Za-z0-9_-])"
_NOT_BEFORE = r"(?![A-Za-z0-9_-])"

# The part of an OpenAI-style key after "sk-" (and an optional project/service prefix).
_OPENAI_BODY = re.compile(r"sk-(?:proj-|svcacct-|admin-)?(?P<body>.*)", re.DOTALL)


class ApiKeyDetector(PatternDetector):
    kind = "API_KEY"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = tuple(
        re.compile(_NOT_AFTER + body + _NOT_BEFORE)
        for body in (
            r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",  # AWS access key id
            r"gh[pousr]_[A-Za-z0-9]{36,251}",  # GitHub classic and app tokens
            r"github_pat_[A-Za-z0-9_]{50,255}",  # GitHub fine-grained token
            r"xox[bpars]-[A-Za-z0-9-]{10,250}",  # Slack bot/user/app/refresh/session tokens
            r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}",  # Stripe secret and restricted keys
            r"AIza[0-9A-Za-z_-]{35}",  # Google API key
            r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,250}",  # OpenAI-style
        )
    )

    def validate(self, candidate: str) -> bool:
        opened = _OPENAI_BODY.fullmatch(candidate)
        if opened is None:
            return True
        # "sk-" also starts ordinary hyphenated words ("sk-learn-tutorial-notebooks"): a key body mixes
        # letters and digits and looks random.
        body = opened.group("body")
        return (
            any(char.isdigit() for char in body)
            and any(char.isalpha() for char in body)
            and shannon_entropy(body) >= 3.5
        )


def _base64url_json(part: str) -> object:
    padded = part + "=" * (-len(part) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return None


class JwtDetector(PatternDetector):
    """header.payload.signature in base64url; the header must decode to a JSON object (it starts "eyJ",
    which is '{"' encoded). The signature may be empty (unsecured JWTs)."""

    kind = "JWT"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = (
        re.compile(_NOT_AFTER + r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*" + _NOT_BEFORE),
    )

    def validate(self, candidate: str) -> bool:
        return isinstance(_base64url_json(candidate.split(".", 1)[0]), dict)


_BEGIN = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY[A-Z ]*)-----")
_END = re.compile(r"-----END (?P<label>[A-Z0-9 ]*PRIVATE KEY[A-Z ]*)-----")
# Lines a PEM body is made of: base64, RFC 1421 headers ("Proc-Type: 4,ENCRYPTED"), blank lines.
_BODY_LINE = re.compile(r"[A-Za-z0-9+/=]*|[A-Za-z-]+: .*|\s*")
_BASE64_TAIL = re.compile(r"[A-Za-z0-9+/=]*$")


def _start_of_body(text: str, end_start: int) -> int:
    """Walk back from an END line over lines that can belong to a key body; the block starts there."""
    start = end_start
    for line in reversed(text[:end_start].splitlines(keepends=True)):
        content = line.rstrip("\r\n")
        if not _BODY_LINE.fullmatch(content):
            # Only the base64 tail of the first line that is not body text joins the block.
            tail = _BASE64_TAIL.search(content)
            if tail is None or tail.start() == len(content):
                return start
            return start - len(line) + tail.start()
        start -= len(line)
    return start


class PrivateKeyDetector:
    """PEM private-key blocks, from ``-----BEGIN … PRIVATE KEY-----`` to the matching END line.

    Text can be cut (a typing burst, a pasted fragment), so a BEGIN without its END runs to the end of
    the text, and an END without a BEGIN reaches back over the key body lines before it.
    """

    kind = "PRIVATE_KEY"

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        position = 0
        while position < len(text):
            begin = _BEGIN.search(text, position)
            end = _END.search(text, begin.end() if begin else position)
            if begin is None and end is None:
                break
            if begin is None:
                assert end is not None
                matches.append(Match(_start_of_body(text, end.start()), end.end(), self.kind))
                position = end.end()
            elif end is None:
                matches.append(Match(begin.start(), len(text), self.kind))
                break
            else:
                # An END before the next BEGIN closes a block whose BEGIN we never saw.
                earlier_end = _END.search(text, position, begin.start())
                if earlier_end is not None:
                    start = _start_of_body(text, earlier_end.start())
                    matches.append(Match(start, earlier_end.end(), self.kind))
                matches.append(Match(begin.start(), end.end(), self.kind))
                position = end.end()
        return matches
