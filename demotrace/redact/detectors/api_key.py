"""Vendor API keys and tokens, by their published prefixes (AWS, GitHub, Slack, Stripe, Google,
OpenAI-style)."""

from __future__ import annotations

import re
from typing import ClassVar

from demotrace.redact.detectors.base import TOKEN_END, TOKEN_START, PatternDetector
from demotrace.redact.detectors.high_entropy import shannon_entropy

# The part of an OpenAI-style key after "sk-" (and an optional project/service prefix).
_OPENAI_BODY = re.compile(r"sk-(?:proj-|svcacct-|admin-)?(?P<body>.*)", re.DOTALL)


class ApiKeyDetector(PatternDetector):
    kind = "API_KEY"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = tuple(
        re.compile(TOKEN_START + body + TOKEN_END)
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
