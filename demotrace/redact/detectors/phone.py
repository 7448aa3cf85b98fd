"""Phone numbers, found and validated by libphonenumber (the ``phonenumbers`` port): numbers without a
country code are read in ``default_region``; only numbers valid for their region match (leniency VALID),
so "555-12" or "(123) 456-7890" (no US area code starts with 1) pass through."""

from __future__ import annotations

from phonenumbers import Leniency, PhoneNumberMatcher

from demotrace.redact.detectors.base import Match


class PhoneDetector:
    kind = "PHONE"

    def __init__(self, default_region: str = "US", leniency: int = Leniency.VALID) -> None:
        self.default_region = default_region
        self.leniency = leniency

    def find(self, text: str) -> list[Match]:
        return [
            Match(found.start, found.end, self.kind)
            for found in PhoneNumberMatcher(text, self.default_region, leniency=self.leniency)
        ]
