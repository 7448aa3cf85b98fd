"""Email addresses: local part, @, dot-separated domain labels and an alphabetic top-level domain.
"name at domain" and hosts without a top-level domain ("root@localhost") are not matched."""

from __future__ import annotations

import re
from typing import ClassVar

from demotrace.redact.detectors.base import PatternDetector

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"


class EmailDetector(PatternDetector):
    kind = "EMAIL"
    patterns: ClassVar[tuple[re.Pattern[str], ...]] = (
        re.compile(rf"(?<![\w.%+-])[\w.%+-]+@(?:{_LABEL}\.)+[A-Za-z]{{2,24}}(?![\w-])"),
    )

    def validate(self, candidate: str) -> bool:
        local = candidate.split("@", 1)[0]
        return not (local.startswith(".") or local.endswith(".") or ".." in local)
