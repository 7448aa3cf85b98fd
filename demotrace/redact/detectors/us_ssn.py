"""US Social Security numbers: AAA-GG-SSSS (dashes or spaces, used consistently), or nine bare digits
right after a context word such as "SSN". Numbers the SSA never issues are near-misses, not matches."""

from __future__ import annotations

import re
from typing import ClassVar

from demotrace.redact.detectors.base import PatternDetector

# Numbers published in advertising (a wallet insert, a famous ad) that are not anyone's own.
_ADVERTISED = frozenset({"078051120", "219099999", "457555462"})


def ssn_issuable(digits: str) -> bool:
    """Could the SSA have issued this nine-digit number? Area 000, 666 and 900–999, group 00 and serial
    0000 never are."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area.startswith("9"):
        return False
    return group != "00" and serial != "0000" and digits not in _ADVERTISED


class UsSsnDetector(PatternDetector):
    kind = "US_SSN"
    # The backreference forces one separator style: "123-45 6789" is not an SSN.
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = (
        re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w-])"),
    )
    context_patterns: ClassVar[tuple[re.Pattern[str], ...]] = (re.compile(r"(?<![\w-])\d{9}(?![\w-])"),)
    context_words: ClassVar[tuple[str, ...]] = ("ssn", "social security", "ss#", "soc sec", "ss no")

    def validate(self, candidate: str) -> bool:
        return ssn_issuable(re.sub(r"[- ]", "", candidate))
