"""OCR's letter/digit confusions, read back as what they probably were."""

from __future__ import annotations

# What OCR reads in place of a digit, and in place of a letter.
DIGIT_LOOKALIKES = str.maketrans("OoDQIl|iSsBZzGbgq", "00001111558226699")
LETTER_LOOKALIKES = str.maketrans("01256840", "OIZSGBAD")


def as_digits(text: str) -> str:
    """The text with letters OCR confuses with digits read as those digits."""
    return text.translate(DIGIT_LOOKALIKES)


def as_letters(text: str) -> str:
    """The text in upper case, with digits OCR confuses with letters read as those letters."""
    return text.translate(LETTER_LOOKALIKES).upper()
