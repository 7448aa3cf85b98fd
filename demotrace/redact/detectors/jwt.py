"""JSON Web Tokens: header.payload.signature in base64url, the header a JSON object."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import ClassVar

from demotrace.redact.detectors.base import TOKEN_END, TOKEN_START, PatternDetector


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
        re.compile(TOKEN_START + r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*" + TOKEN_END),
    )

    def validate(self, candidate: str) -> bool:
        return isinstance(_base64url_json(candidate.split(".", 1)[0]), dict)
