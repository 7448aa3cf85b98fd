"""Safeguards: sensitive text is found and replaced in memory, before anything is written.

``detectors`` holds one class per sensitive type; ``text`` redacts strings and live typing bursts.
"""

from demotrace.redact.detectors import all_detectors
from demotrace.redact.detectors.base import Detector, Match
from demotrace.redact.text import RedactedBurst, RedactionResult, TypingBurstRedactor, redact_text

__all__ = [
    "Detector",
    "Match",
    "RedactedBurst",
    "RedactionResult",
    "TypingBurstRedactor",
    "all_detectors",
    "redact_text",
]
