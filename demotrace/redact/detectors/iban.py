"""International bank account numbers: country code, two check digits and the country's fixed-length
account part, optionally in groups separated by single spaces; the ISO 13616 mod-97 check must hold."""

from __future__ import annotations

import re

from demotrace.redact.detectors.base import Match

# Total IBAN length (country code and check digits included) per country, from the SWIFT IBAN registry.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# Where an IBAN may start: two letters and two digits, not glued to a preceding letter or digit.
_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")


def _is_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def mod97_valid(iban: str) -> bool:
    """ISO 7064 mod 97-10 as IBANs use it: the rearranged number, letters as 10–35, leaves remainder 1."""
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for char in rearranged:
        # Digit-by-digit remainder keeps the arithmetic small; letters contribute two digits.
        for digit in str(int(char, 36)):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder == 1


def _take_iban(text: str, start: int, length: int) -> tuple[str, int] | None:
    """Read ``length`` letters/digits from ``start``, allowing single spaces between them; the IBAN must
    end there (no letter or digit right after). Returns the compact IBAN and the end offset."""
    chars: list[str] = []
    position = start
    while position < len(text) and len(chars) < length:
        char = text[position]
        if _is_alnum(char):
            chars.append(char)
        elif not (char == " " and chars and position + 1 < len(text) and _is_alnum(text[position + 1])):
            break
        position += 1
    if len(chars) != length or (position < len(text) and _is_alnum(text[position])):
        return None
    return "".join(chars), position


class IbanDetector:
    kind = "IBAN"

    def validate(self, candidate: str) -> bool:
        compact = candidate.replace(" ", "").upper()
        expected = IBAN_LENGTHS.get(compact[:2])
        return (
            expected is not None
            and len(compact) == expected
            and compact.isascii()
            and compact.isalnum()
            and compact[2:4].isdigit()
            and mod97_valid(compact)
        )

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        position = 0
        while (start := _START.search(text, position)) is not None:
            length = IBAN_LENGTHS.get(start.group()[:2].upper())
            taken = _take_iban(text, start.start(), length) if length else None
            if taken is not None and self.validate(taken[0]):
                matches.append(Match(start.start(), taken[1], self.kind))
                position = taken[1]
            else:
                position = start.start() + 1
        return matches
