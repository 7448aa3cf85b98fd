"""Random-looking tokens from 12 characters, judged between ``/`` and ``.``."""

from __future__ import annotations

import re

from demotrace.redact.detectors.base import Match, has_context_word
from demotrace.redact.detectors.high_entropy import (
    SECRET_CONTEXT_WORDS,
    TOKEN_CHARS,
    UUID_SHAPE,
    looks_random,
)

SCREEN_SECRET_MIN_CHARS = 12
_SCREEN_TOKEN = re.compile(
    rf"(?<![{TOKEN_CHARS}=])[{TOKEN_CHARS}]{{{SCREEN_SECRET_MIN_CHARS},}}={{0,3}}(?![A-Za-z0-9+/_~\-=])"
)
# Paths and dotted names (versions, hosts, files) are judged part by part; base64 keys rarely hold a
# "/" and never a ".", so their long random part is still found, and a JWT's parts each are.
_PART_SEPARATORS = re.compile(r"[/.]")


class ScreenSecretDetector:
    """Random-looking tokens of 12 characters or more. A token with ``/`` or ``.`` in it is a secret
    when one of its parts is: paths (``/work/wt-ocr-recall``) and versions (``6.1.0-18-amd64``) are
    short or wordy between the separators."""

    kind = "SECRET"

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        for found in _SCREEN_TOKEN.finditer(text):
            start, end = found.span()
            while end > start and text[end - 1] == ".":  # a sentence's full stop
                end -= 1
            token = text[start:end]
            if UUID_SHAPE.fullmatch(token) and not has_context_word(text, start, SECRET_CONTEXT_WORDS):
                continue
            if any(looks_random(part, SCREEN_SECRET_MIN_CHARS) for part in _PART_SEPARATORS.split(token)):
                matches.append(Match(start, end, self.kind))
        return matches
