"""Long digit runs: what a text box scrolled sideways shows of a card, an IBAN or an account number."""

from __future__ import annotations

import re

from demotrace.redact.detectors.base import Match

MIN_DIGIT_RUN = 9
# Digits, single spaces or dashes between them, and OCR's usual letters for digits inside; not inside a
# longer token (the last group of a UUID, a version, a file name).
_DIGIT_RUN = re.compile(r"(?<![\w.\-/])[OoIl|]?\d(?:[ -]?[\dOoIl|SB])*\d(?![0-9])")
# Dates are the long digit runs ordinary screens are full of (2024-01-15, 15-01-2024).
_DATE = re.compile(r"(?<!\d)(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{4})(?!\d)")
# Share of a run's characters that must be real digits (the rest: look-alikes OCR read for digits).
MIN_REAL_DIGIT_SHARE = 2 / 3


class DigitRunDetector:
    """Nine or more digits in a row, or in groups split by single spaces or dashes, dates excepted; a
    few OCR look-alikes (``O`` for ``0``, ``l`` for ``1``) count as digits inside a run."""

    kind = "NUMBER"

    def find(self, text: str) -> list[Match]:
        without_dates = _DATE.sub(lambda date: "x" * len(date.group()), text)
        matches = []
        for run in _DIGIT_RUN.finditer(without_dates):
            characters = [char for char in run.group() if char not in " -"]
            digits = sum(char.isdigit() for char in characters)
            if len(characters) >= MIN_DIGIT_RUN and digits >= MIN_REAL_DIGIT_SHARE * len(characters):
                matches.append(Match(run.start(), run.end(), self.kind))
        return matches
