"""Lenient detectors for text read off the screen by OCR, one module each; never used on typed text.

On a screen the costs are the other way round from typed text: a false positive paints one small black
box over a word on one frame, a miss leaks the value into every copy of that frame. And OCR slips: it
reads ``0`` for ``O`` and ``6`` for ``G``, drops an ``_`` or an ``@``, and a text box scrolled sideways
shows only the tail of a value. So these detectors trust shapes, not checksums:

* ``iban.LenientIbanDetector``: a country code, two check digits and a mostly-digit account part of
  about the country's length, OCR's letter/digit confusions folded, no mod-97 check.
* ``email.LenientEmailDetector``: ``local@domain.tld`` where the ``@`` may be a look-alike (``©``,
  ``®``) and may stand apart from one of its neighbours.
* ``api_key.LenientApiKeyDetector``: vendor key prefixes with look-alike characters and a lost separator.
* ``secret.ScreenSecretDetector``: random-looking tokens from 12 characters (typed text wants 20), judged
  between ``/`` so the path in a shell prompt is not a secret.
* ``digit_run.DigitRunDetector``: nine or more digits in a row or in groups (what a text box scrolled
  sideways shows of a card, an IBAN or an account number), dates excepted.

Ordinary screen text (UI words, dates, short numbers, window titles, a shell prompt) must still pass:
``tests/test_detectors.py`` holds the near-misses. ``lookalikes`` reads OCR's letter/digit confusions.
"""
