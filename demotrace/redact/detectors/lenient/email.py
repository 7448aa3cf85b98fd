"""Email addresses whose ``@`` OCR read as a look-alike or set apart by a space."""

from __future__ import annotations

import re
from typing import ClassVar

from demotrace.redact.detectors.base import PatternDetector


class LenientEmailDetector(PatternDetector):
    """An address whose ``@`` OCR read as a look-alike or set apart by a space on one side (the space
    inside the domain, or a comma for its dot, are undone by the screen's lenient reading)."""

    kind = "EMAIL"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = (
        re.compile(
            r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*(?:\s?[@©®]|[@©®]\s)"
            r"(?:[A-Za-z0-9-]+[.,])+[A-Za-z]{2,24}(?![\w-])"
        ),
    )
