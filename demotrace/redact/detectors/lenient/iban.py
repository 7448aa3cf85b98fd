"""IBANs by shape: country code, check digits and a mostly-digit account part, no mod-97 check."""

from __future__ import annotations

import re

from demotrace.redact.detectors.base import Match
from demotrace.redact.detectors.iban import IBAN_LENGTHS
from demotrace.redact.detectors.lenient.lookalikes import as_digits, as_letters

# An IBAN read by OCR may be this many characters longer or shorter than its country's length.
IBAN_LENGTH_SLACK = 2
# Share of an IBAN's account part that reads as digits (GB and NL put four letters of bank code first),
# and the fewest real digits in it (so a sentence after "DE44" is not an account).
IBAN_MIN_DIGIT_SHARE = 0.5
IBAN_MIN_ACCOUNT_DIGITS = 6
_ALNUM_GROUP = re.compile(r"[A-Za-z0-9]+")


def _looks_like_account(account: str) -> bool:
    digit_like = sum(char.isdigit() for char in as_digits(account))
    digits = sum(char.isdigit() for char in account)
    return digit_like >= IBAN_MIN_DIGIT_SHARE * len(account) and digits >= IBAN_MIN_ACCOUNT_DIGITS


class LenientIbanDetector:
    """Letter/digit groups, single spaces between them, that start like an IBAN (a country code and two
    check digits, look-alikes folded) and are about as long as that country's IBANs."""

    kind = "IBAN"

    def find(self, text: str) -> list[Match]:
        groups = list(_ALNUM_GROUP.finditer(text))
        matches: list[Match] = []
        first = 0
        while first < len(groups):
            last = self._last_group(text, groups, first)
            if last is None:
                first += 1
                continue
            matches.append(Match(groups[first].start(), groups[last].end(), self.kind))
            first = last + 1
        return matches

    @staticmethod
    def _last_group(text: str, groups: list[re.Match[str]], first: int) -> int | None:
        """The last group of an IBAN starting at group ``first``: the boundary nearest the country's
        length within the slack, or None."""
        head = groups[first].group()
        expected = IBAN_LENGTHS.get(as_letters(head[:2]))
        if len(head) < 4 or expected is None or not as_digits(head[2:4]).isdigit():
            return None
        best: tuple[int, int] | None = None  # (distance from the expected length, group index)
        length = 0
        for index in range(first, len(groups)):
            if index > first and text[groups[index - 1].end() : groups[index].start()] != " ":
                break
            group = groups[index].group()
            length += len(group)
            if length > expected + IBAN_LENGTH_SLACK:
                break
            compact = "".join(g.group() for g in groups[first : index + 1])
            distance = abs(length - expected)
            nearer = best is None or distance < best[0]
            if distance <= IBAN_LENGTH_SLACK and nearer and _looks_like_account(compact[4:]):
                best = (distance, index)
        return None if best is None else best[1]
