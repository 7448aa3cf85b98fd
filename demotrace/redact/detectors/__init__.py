"""Detectors of sensitive text: one class per sensitive type, each in a module of its own and testable
on its own. ``base`` holds what they share (``Match``, the ``Detector`` protocol, ``PatternDetector``);
``lenient/`` holds the screen-only ones. This module lists them.

To add a type: write a module here with one class, give it tests, and list it in :func:`all_detectors`.
"""

from __future__ import annotations

from demotrace.redact.detectors.api_key import ApiKeyDetector
from demotrace.redact.detectors.base import Detector
from demotrace.redact.detectors.email import EmailDetector
from demotrace.redact.detectors.high_entropy import HighEntropyDetector
from demotrace.redact.detectors.iban import IbanDetector
from demotrace.redact.detectors.jwt import JwtDetector
from demotrace.redact.detectors.lenient.api_key import LenientApiKeyDetector
from demotrace.redact.detectors.lenient.digit_run import DigitRunDetector
from demotrace.redact.detectors.lenient.email import LenientEmailDetector
from demotrace.redact.detectors.lenient.iban import LenientIbanDetector
from demotrace.redact.detectors.lenient.secret import ScreenSecretDetector
from demotrace.redact.detectors.own_identity import Identity, KnownValueDetector, identity_detectors
from demotrace.redact.detectors.payment_card import PaymentCardDetector
from demotrace.redact.detectors.phone import PhoneDetector
from demotrace.redact.detectors.private_key import PrivateKeyDetector
from demotrace.redact.detectors.us_ssn import UsSsnDetector


def all_detectors(phone_region: str = "US", identity: Identity | None = None) -> list[Detector]:
    """One instance of every detector, phone numbers read with ``phone_region`` as the default region,
    and the person's own login, full name and host name (``identity``; this process's if None)."""
    return [
        *identity_detectors(identity),
        PrivateKeyDetector(),
        JwtDetector(),
        ApiKeyDetector(),
        PaymentCardDetector(),
        IbanDetector(),
        UsSsnDetector(),
        EmailDetector(),
        PhoneDetector(default_region=phone_region),
        HighEntropyDetector(),
    ]


def screen_detectors(phone_region: str = "US", identity: Identity | None = None) -> list[Detector]:
    """The detectors for text read off the screen by OCR: every typed-text detector but the high-entropy
    one, plus the lenient screen-only ones (see ``lenient``), which trade precision for recall since a
    false positive only paints a box over a word on one frame."""
    # The high-entropy detector reads a shell prompt's path as a secret; ScreenSecretDetector judges
    # paths part by part and catches shorter tokens.
    strict = [
        d
        for d in all_detectors(phone_region, identity)
        if not isinstance(d, HighEntropyDetector | KnownValueDetector)
    ]
    return [
        *strict,
        *identity_detectors(identity, screen=True),
        LenientIbanDetector(),
        LenientEmailDetector(),
        LenientApiKeyDetector(),
        ScreenSecretDetector(),
        DigitRunDetector(),
    ]


__all__ = ["all_detectors", "screen_detectors"]
