"""PEM private-key blocks, whole or cut (a typing burst, a pasted fragment)."""

from __future__ import annotations

import re

from demotrace.redact.detectors.base import Match

_BEGIN = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY[A-Z ]*)-----")
_END = re.compile(r"-----END (?P<label>[A-Z0-9 ]*PRIVATE KEY[A-Z ]*)-----")
# Lines a PEM body is made of: base64, RFC 1421 headers ("Proc-Type: 4,ENCRYPTED"), blank lines.
_BODY_LINE = re.compile(r"[A-Za-z0-9+/=]*|[A-Za-z-]+: .*|\s*")
_BASE64_TAIL = re.compile(r"[A-Za-z0-9+/=]*$")


def _start_of_body(text: str, end_start: int) -> int:
    """Walk back from an END line over lines that can belong to a key body; the block starts there."""
    start = end_start
    for line in reversed(text[:end_start].splitlines(keepends=True)):
        content = line.rstrip("\r\n")
        if not _BODY_LINE.fullmatch(content):
            # Only the base64 tail of the first line that is not body text joins the block.
            tail = _BASE64_TAIL.search(content)
            if tail is None or tail.start() == len(content):
                return start
            return start - len(line) + tail.start()
        start -= len(line)
    return start


class PrivateKeyDetector:
    """PEM private-key blocks, from ``-----BEGIN … PRIVATE KEY-----`` to the matching END line.

    Text can be cut (a typing burst, a pasted fragment), so a BEGIN without its END runs to the end of
    the text, and an END without a BEGIN reaches back over the key body lines before it.
    """

    kind = "PRIVATE_KEY"

    def find(self, text: str) -> list[Match]:
        matches: list[Match] = []
        position = 0
        while position < len(text):
            begin = _BEGIN.search(text, position)
            end = _END.search(text, begin.end() if begin else position)
            if begin is None and end is None:
                break
            if begin is None:
                assert end is not None
                matches.append(Match(_start_of_body(text, end.start()), end.end(), self.kind))
                position = end.end()
            elif end is None:
                matches.append(Match(begin.start(), len(text), self.kind))
                break
            else:
                # An END before the next BEGIN closes a block whose BEGIN we never saw.
                earlier_end = _END.search(text, position, begin.start())
                if earlier_end is not None:
                    start = _start_of_body(text, earlier_end.start())
                    matches.append(Match(start, earlier_end.end(), self.kind))
                matches.append(Match(begin.start(), end.end(), self.kind))
                position = end.end()
        return matches
