"""Each detector alone: real positives match exactly, near-misses pass through."""

from __future__ import annotations

import pytest

from demotrace.redact.detectors import all_detectors
from demotrace.redact.detectors.api_key import ApiKeyDetector
from demotrace.redact.detectors.base import Detector, Match
from demotrace.redact.detectors.email import EmailDetector
from demotrace.redact.detectors.high_entropy import HighEntropyDetector
from demotrace.redact.detectors.iban import IbanDetector, mod97_valid
from demotrace.redact.detectors.jwt import JwtDetector
from demotrace.redact.detectors.payment_card import PaymentCardDetector, luhn_valid
from demotrace.redact.detectors.phone import PhoneDetector
from demotrace.redact.detectors.private_key import PrivateKeyDetector
from demotrace.redact.detectors.us_ssn import UsSsnDetector, ssn_issuable


def found(detector: Detector, text: str) -> list[str]:
    return [text[m.start : m.end] for m in detector.find(text)]


def assert_finds(detector: Detector, value: str) -> None:
    text = f"here it is: {value}. thanks"
    assert found(detector, text) == [value]


def assert_ignores(detector: Detector, value: str) -> None:
    assert found(detector, f"here it is: {value}. thanks") == []


# --- payment cards ---

CARDS = [
    "4111111111111111",  # Visa
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5555 5555 5555 4444",  # Mastercard
    "2223 0031 2200 3222",  # Mastercard 2-series
    "3782 822463 10005",  # Amex 4-6-5
    "6011 1111 1111 1117",  # Discover
    "3530 1113 3330 0000",  # JCB
    "3056 9309 0259 04",  # Diners, 14 digits
    "6200 0000 0000 0005",  # UnionPay
]


@pytest.mark.parametrize("card", CARDS)
def test_card_found(card: str) -> None:
    assert_finds(PaymentCardDetector(), card)


@pytest.mark.parametrize(
    "near_miss",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "4111111111111121",  # Luhn fails
        "9111 1111 1111 1115",  # Luhn holds but no issuer starts with 9
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits
        "1234-5678",
    ],
)
def test_card_near_miss_ignored(near_miss: str) -> None:
    assert_ignores(PaymentCardDetector(), near_miss)


def test_card_followed_by_another_number_is_still_found() -> None:
    assert found(PaymentCardDetector(), "card 4111111111111111 5 times") == ["4111111111111111"]


def test_card_inside_a_longer_token_is_not_a_card() -> None:
    assert found(PaymentCardDetector(), "id x4111111111111111y") == []


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


# --- US SSN ---


@pytest.mark.parametrize("ssn", ["123-45-6789", "123 45 6789", "078-05-1121", "899-99-9999"])
def test_ssn_found(ssn: str) -> None:
    assert_finds(UsSsnDetector(), ssn)


@pytest.mark.parametrize(
    "near_miss",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "912-34-5678",  # area 9xx
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "078-05-1120",  # the advertised wallet-insert number
        "123-45 6789",  # mixed separators
        "1234-56-789",
    ],
)
def test_ssn_near_miss_ignored(near_miss: str) -> None:
    assert_ignores(UsSsnDetector(), near_miss)


def test_bare_nine_digits_need_a_context_word() -> None:
    assert found(UsSsnDetector(), "my SSN: 123456789") == ["123456789"]
    assert found(UsSsnDetector(), "order number 123456789") == []


def test_ssn_rules() -> None:
    assert ssn_issuable("123456789")
    assert not ssn_issuable("666456789")


# --- IBAN ---

IBANS = [
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "DE89 3704 0044 0532 0130 00",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "CH93 0076 2011 6238 5295 7",
    "NO93 8601 1117 947",
]


@pytest.mark.parametrize("iban", IBANS)
def test_iban_found(iban: str) -> None:
    assert_finds(IbanDetector(), iban)


@pytest.mark.parametrize(
    "near_miss",
    [
        "GB82 WEST 1234 5698 7654 33",  # checksum fails
        "DE89 3704 0044 0532 0130 0",  # one character short for DE
        "DE89370400440532013000X",  # one too long
        "ZZ82 WEST 1234 5698 7654 32",  # no such country
    ],
)
def test_iban_near_miss_ignored(near_miss: str) -> None:
    assert_ignores(IbanDetector(), near_miss)


def test_iban_stops_at_its_length() -> None:
    text = "pay DE89 3704 0044 0532 0130 00 12 times"
    assert found(IbanDetector(), text) == ["DE89 3704 0044 0532 0130 00"]


def test_mod97() -> None:
    assert mod97_valid("GB82WEST12345698765432")
    assert not mod97_valid("GB83WEST12345698765432")


# --- email ---


@pytest.mark.parametrize("email", ["john.doe@example.com", "a+tag@mail.co.uk", "x_y-z@sub.domain.io"])
def test_email_found(email: str) -> None:
    assert_finds(EmailDetector(), email)


@pytest.mark.parametrize(
    "near_miss", ["john at example.com", "root@localhost", "john@example.c", "john..doe@example.com", "@home"]
)
def test_email_near_miss_ignored(near_miss: str) -> None:
    assert_ignores(EmailDetector(), near_miss)


# --- phone ---


@pytest.mark.parametrize("phone", ["(415) 555-2671", "415-555-2671", "+1 415 555 2671", "+44 20 7946 0958"])
def test_phone_found(phone: str) -> None:
    assert_finds(PhoneDetector(), phone)


@pytest.mark.parametrize("near_miss", ["555-12", "(123) 456-7890", "12345"])
def test_phone_near_miss_ignored(near_miss: str) -> None:
    assert_ignores(PhoneDetector(), near_miss)


def test_phone_default_region_is_configurable() -> None:
    london = "020 7946 0958"
    assert found(PhoneDetector(default_region="GB"), f"ring {london} today") == [london]
    assert found(PhoneDetector(default_region="US"), f"ring {london} today") == []


# --- vendor keys, JWT, private keys ---

API_KEYS = [
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6",
    "github_pat_11ABCDEFG0123456789abc_" + "x" * 59,
    "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_51H8abcdefGHIJKLmnop",
    "AIzaSyD-1234567890abcdefghijklmnopqrstu",
    "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
]


@pytest.mark.parametrize("key", API_KEYS)
def test_api_key_found(key: str) -> None:
    assert_finds(ApiKeyDetector(), key)


@pytest.mark.parametrize(
    "near_miss",
    [
        "AKIAIOSFODNN7EXAMPL",  # 15 characters after the prefix
        "ghp_short",
        "sk-learn-tutorial-notebooks-here",  # words, not a key
        "xoxq-1234567890-abcdef",  # no such Slack token type
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc",  # publishable, not secret
    ],
)
def test_api_key_near_miss_ignored(near_miss: str) -> None:
    assert_ignores(ApiKeyDetector(), near_miss)


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def test_jwt_found() -> None:
    assert_finds(JwtDetector(), JWT)


def test_jwt_whose_header_is_not_json_is_ignored() -> None:
    assert_ignores(JwtDetector(), "eyJnotjsonatall.eyJhbGciOi.abcdefghijk")


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8a5nLZ+Qc1F2Fz0y3xq9Xbe4h\n"
    "q2N0bnGk1m3bmZr8wZ0y4QxHf7uV6aT2c+K1==\n"
    "-----END RSA PRIVATE KEY-----"
)


def test_private_key_block_found_whole() -> None:
    assert_finds(PrivateKeyDetector(), PEM)


def test_private_key_without_end_runs_to_the_end_of_the_text() -> None:
    text = "key: " + PEM[:80]
    assert PrivateKeyDetector().find(text) == [Match(5, len(text), "PRIVATE_KEY")]


def test_private_key_end_without_begin_reaches_back_over_the_body() -> None:
    tail = PEM[PEM.index("\n") + 1 :]
    text = "as I was saying:\n" + tail
    assert found(PrivateKeyDetector(), text) == [tail]


def test_public_key_is_not_private() -> None:
    assert_ignores(PrivateKeyDetector(), "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----")


# --- high entropy ---


@pytest.mark.parametrize(
    "token",
    [
        "Xk9qT3mZp7LwR2vN8sYb4",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",  # 40 hex
        "dGhpcyBpcyBub3QgYSByZWFsIGtleQ8x9/Q+z==",  # base64
    ],
)
def test_random_token_found(token: str) -> None:
    assert_finds(HighEntropyDetector(), token)


@pytest.mark.parametrize(
    "near_miss",
    [
        "internationalization",
        "getUserAccountSettingsById",
        "/usr/local/lib/python3.11/site-packages",
        "src/demotrace/redact/text.py",
        "customer_7781_invoice_2023.pdf",
        "IMG_20240115_103045.jpg",
        "4111111111111112",  # digits only
        "550e8400-e29b-41d4-a716-446655440000",  # a UUID with no secret word before it
    ],
)
def test_plain_token_ignored(near_miss: str) -> None:
    assert_ignores(HighEntropyDetector(), near_miss)


def test_uuid_after_a_secret_word_is_a_secret() -> None:
    uuid = "550e8400-e29b-41d4-a716-446655440000"
    assert found(HighEntropyDetector(), f"heroku api key {uuid}") == [uuid]


# --- registry ---


def test_registry_has_one_detector_per_kind() -> None:
    kinds = [detector.kind for detector in all_detectors()]
    assert len(kinds) == len(set(kinds))
    assert {
        "CREDIT_CARD",
        "US_SSN",
        "IBAN",
        "EMAIL",
        "PHONE",
        "API_KEY",
        "JWT",
        "PRIVATE_KEY",
        "SECRET",
    } <= set(kinds)


def test_phone_region_reaches_the_phone_detector() -> None:
    phones = [d for d in all_detectors(phone_region="GB") if isinstance(d, PhoneDetector)]
    assert [p.default_region for p in phones] == ["GB"]


CARD_EXAMPLE = "4111 1111 1111 1111"


def test_digit_groups_of_a_spaced_iban_are_not_a_card() -> None:
    # Not a valid IBAN, yet the digits after "FR72 " belong to it: they are not read as a card.
    assert found(PaymentCardDetector(), "IBAN FR72 4111 1111 1111 1111 3379 866 ok") == []
    assert found(PaymentCardDetector(), "card 4111 1111 1111 1111 ok") == [CARD_EXAMPLE]
