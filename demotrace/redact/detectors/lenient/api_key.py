"""Vendor key prefixes as OCR reads them (look-alikes, a lost separator), followed by a key body."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

from demotrace.redact.detectors.base import PatternDetector
from demotrace.redact.detectors.high_entropy import shannon_entropy

KEY_BODY_MIN_CHARS = 12
KEY_BODY_MIN_ENTROPY_BITS = 3.0
_KEY_START = r"(?<![A-Za-z0-9])"
# Vendor prefixes as OCR reads them: look-alikes in brackets, a separator that may be lost or read as a
# space. Only the start of the body is required: a scrolled text box may cut the rest.
_KEY_PREFIXES = (
    r"[A4][KX][I1l|][A4]",  # AWS access key id
    r"[gq9][hb][pousr0][_\- ]?",  # GitHub classic and app tokens
    r"g[i1l]thub[_ ]pat[_ ]",  # GitHub fine-grained
    r"x[o0]x[bpars][\- ]",  # Slack
    r"[sr]k[_ ](?:live|test)[_ ]",  # Stripe
    r"A[I1l|]za",  # Google
    r"sk[\-_ ](?:proj[\-_ ]|svcacct[\-_ ]|admin[\-_ ])?",  # OpenAI-style
)


class LenientApiKeyDetector(PatternDetector):
    """A vendor prefix (look-alikes allowed) followed by at least 12 characters of a key body that mixes
    letters and digits."""

    kind = "API_KEY"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = tuple(
        re.compile(_KEY_START + rf"(?:{prefix})(?P<body>[A-Za-z0-9_\-]{{{KEY_BODY_MIN_CHARS},}})")
        for prefix in _KEY_PREFIXES
    )

    def candidate_spans(self, text: str) -> Iterator[tuple[int, int]]:
        # The whole key, prefix included, is the span; only its body is judged.
        for pattern in self.patterns:
            for found in pattern.finditer(text):
                if _key_body(found.group("body")):
                    yield found.span()


def _key_body(body: str) -> bool:
    return (
        any(char.isdigit() for char in body)
        and any(char.isalpha() for char in body)
        and shannon_entropy(body) >= KEY_BODY_MIN_ENTROPY_BITS
    )
