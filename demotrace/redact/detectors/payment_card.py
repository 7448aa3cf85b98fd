"""Payment card numbers: 13–19 digits, optionally grouped by spaces or dashes, with a known issuer prefix
and a valid Luhn check digit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from demotrace.redact.detectors.base import Match

# Digits with single spaces or dashes between them; the digit groups are re-split below, so a card
# followed by another number ("4111111111111111 5") is still found.
_DIGIT_RUN = re.compile(r"(?<!\w)\d+(?:[ -]\d+)*(?!\w)")
_GROUP = re.compile(r"\d+")
# Digit groups right after "FR76 " (and more groups) are the account part of a spaced IBAN, not a card.
_IBAN_BEFORE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: [A-Za-z0-9]{4})* $")
_IBAN_LOOKBACK_CHARS = 48

MIN_DIGITS = 13
MAX_DIGITS = 19


@dataclass(frozen=True)
class CardBrand:
    name: str
    # Inclusive ranges over the leading digits: (51, 55) tests the first two, (2221, 2720) the first four.
    prefix_ranges: tuple[tuple[int, int], ...]
    lengths: frozenset[int]

    def issued(self, digits: str) -> bool:
        if len(digits) not in self.lengths:
            return False
        for low, high in self.prefix_ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return True
        return False


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


BRANDS: tuple[CardBrand, ...] = (
    CardBrand("visa", ((4, 4),), frozenset({13, 16, 19})),
    CardBrand("mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    CardBrand("amex", ((34, 34), (37, 37)), frozenset({15})),
    CardBrand("discover", ((6011, 6011), (644, 649), (65, 65)), _lengths(16, 19)),
    CardBrand("diners", ((300, 305), (3095, 3095), (36, 36), (38, 39)), _lengths(14, 19)),
    CardBrand("jcb", ((3528, 3589),), _lengths(16, 19)),
    CardBrand("unionpay", ((62, 62),), _lengths(16, 19)),
    CardBrand("maestro", ((50, 50), (56, 58), (67, 67)), _lengths(13, 19)),
    CardBrand("mir", ((2200, 2204),), _lengths(16, 19)),
    CardBrand("rupay", ((60, 60), (81, 82)), frozenset({16})),
)


def luhn_valid(digits: str) -> bool:
    """The Luhn mod-10 check: double every second digit from the right, sum the digits, ends in 0."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def brand_of(digits: str) -> str | None:
    for brand in BRANDS:
        if brand.issued(digits):
            return brand.name
    return None


class PaymentCardDetector:
    kind = "CREDIT_CARD"

    def validate(self, candidate: str) -> bool:
        digits = re.sub(r"[ -]", "", candidate)
        return (
            digits.isdigit()
            and MIN_DIGITS <= len(digits) <= MAX_DIGITS
            and brand_of(digits) is not None
            and luhn_valid(digits)
        )

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        for run in _DIGIT_RUN.finditer(text):
            if _IBAN_BEFORE.search(text, max(0, run.start() - _IBAN_LOOKBACK_CHARS), run.start()):
                continue
            groups = [(group.start(), group.end()) for group in _GROUP.finditer(text, run.start(), run.end())]
            matches.extend(self._cards_in_groups(text, groups))
        return matches

    def _cards_in_groups(self, text: str, groups: list[tuple[int, int]]) -> list[Match]:
        """The longest valid card made of consecutive whole groups, scanning left to right."""
        found: list[Match] = []
        first = 0
        while first < len(groups):
            best_last: int | None = None
            digit_count = 0
            for last in range(first, len(groups)):
                digit_count += groups[last][1] - groups[last][0]
                if digit_count > MAX_DIGITS:
                    break
                span_text = text[groups[first][0] : groups[last][1]]
                if digit_count >= MIN_DIGITS and self.validate(span_text):
                    best_last = last
            if best_last is None:
                first += 1
                continue
            found.append(Match(groups[first][0], groups[best_last][1], self.kind))
            first = best_last + 1
        return found
