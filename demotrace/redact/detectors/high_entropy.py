"""Unlabelled secrets: long tokens that look random (passwords pasted into a field, keys of services we
have no pattern for, base64 or hex blobs).

A token is a run of at least 20 characters from the base64/base64url/hex alphabets plus ``. ~``. It is a
secret when it mixes character classes (two of lower, upper, digit), its Shannon entropy is high, and it
falls apart into short pieces rather than words: split at case and letter/digit changes, random text
gives pieces of one or two characters, while identifiers (``getUserAccountSettings``), paths
(``src/app/main.py``) and file names (``IMG_20240115.jpg``) give words and long numbers.

Canonical UUIDs (8-4-4-4-12 hex) pass through unless a secret-ish word ("key", "token", ...) comes just
before them: they are mostly public identifiers (documents, requests), and redacting every one would
strip useful context from the data.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from demotrace.redact.detectors.base import Match, has_context_word

MINTOKEN_CHARS = 20
MIN_ENTROPY_BITS = 3.0
# Random text breaks into short pieces (median under 2 characters); words and numbers make long ones.
MAX_MEAN_PIECE_CHARS = 3.5
# Share of a token covered by pronounceable pieces of 5+ letters: words, not chance letter runs.
MAX_WORD_SHARE = 0.3
MIN_WORD_CHARS = 5

TOKEN_CHARS = r"A-Za-z0-9+/_.~\-"
_TOKEN = re.compile(
    rf"(?<![{TOKEN_CHARS}=])[{TOKEN_CHARS}]{{{MINTOKEN_CHARS},}}={{0,3}}(?![A-Za-z0-9+/_~\-=])"
)
# A token's pieces: camel-case words ("User"), upper-case runs ("HTTP"), digit runs.
_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_CONSONANT_RUN = re.compile(r"[^aeiouy]{4}")
UUID_SHAPE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SECRET_CONTEXT_WORDS = ("key", "token", "secret", "password", "passwd", "pwd", "credential", "bearer", "auth")


def shannon_entropy(text: str) -> float:
    """Bits per character of the text's own character distribution."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(count / total * math.log2(count / total) for count in Counter(text).values())


def _is_wordlike(piece: str) -> bool:
    """Pronounceable enough to be a word: letters only, a plausible share of vowels, no four consonants
    in a row. Good enough to tell "Settings" from "qZxkT"; no dictionary needed."""
    if len(piece) < MIN_WORD_CHARS or not piece.isalpha():
        return False
    lower = piece.lower()
    vowel_share = sum(char in "aeiouy" for char in lower) / len(lower)
    return 0.2 <= vowel_share <= 0.7 and _CONSONANT_RUN.search(lower) is None


def _char_classes(token: str) -> set[str]:
    return {"digit" if c.isdigit() else "upper" if c.isupper() else "lower" for c in token if c.isalnum()}


def looks_random(token: str, min_chars: int = MINTOKEN_CHARS) -> bool:
    """Long (``min_chars`` or more), at least two of lower/upper/digit, high entropy, short pieces, few
    words."""
    pieces = _PIECE.findall(token)
    piece_chars = sum(len(piece) for piece in pieces)
    if len(token) < min_chars or not pieces or len(_char_classes(token)) < 2:
        return False
    word_chars = sum(len(piece) for piece in pieces if _is_wordlike(piece))
    return (
        shannon_entropy(token) >= MIN_ENTROPY_BITS
        and piece_chars / len(pieces) <= MAX_MEAN_PIECE_CHARS
        and word_chars / piece_chars <= MAX_WORD_SHARE
    )


class HighEntropyDetector:
    kind = "SECRET"

    def validate(self, candidate: str) -> bool:
        return looks_random(candidate)

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        for found in _TOKEN.finditer(text):
            start, end = found.span()
            # A sentence's full stop is not part of the token.
            while end > start and text[end - 1] == ".":
                end -= 1
            token = text[start:end]
            if UUID_SHAPE.fullmatch(token) and not has_context_word(text, start, SECRET_CONTEXT_WORDS):
                continue
            if self.validate(token):
                matches.append(Match(start, end, self.kind))
        return matches
