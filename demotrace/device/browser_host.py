"""The browser extension's native messaging host: ``python -m demotrace.device.browser_host``.

The browser starts it (``demotrace browser install`` registers it) when the extension connects, and
talks to it over stdin: each message a 4-byte length in native byte order, then that much UTF-8 JSON
(the native messaging protocol of Chromium, Chrome and Firefox). Each message is checked against the
report types (:mod:`demotrace.capture.browser_pages`: known fields only, a few KiB at most) and passed
on as one line to the recorder's browser socket, which only this OS user can reach. Nothing goes
anywhere else and nothing is written to disk.

No recorder listening: the host exits at once (the extension tries again on a later browser event). It
exits too when the browser closes its stdin or the recorder hangs up.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from typing import BinaryIO

from demotrace.capture.browser_bridge import default_browser_socket
from demotrace.capture.browser_pages import MAX_REPORT_BYTES, ReportError, decode_report, encode_report

HOST_NAME = "com.demotrace.recorder"
_LENGTH = struct.Struct("=I")


class HostError(Exception):
    """The browser broke the native messaging protocol."""


def read_message(stream: BinaryIO) -> bytes | None:
    """One native message from the browser; None when it closed the stream."""
    head = stream.read(_LENGTH.size)
    if not head:
        return None
    if len(head) < _LENGTH.size:
        raise HostError("the browser closed the stream inside a message length")
    (length,) = _LENGTH.unpack(head)
    if length > MAX_REPORT_BYTES:
        raise HostError(f"a message of {length} bytes (at most {MAX_REPORT_BYTES})")
    body = stream.read(length)
    if len(body) < length:
        raise HostError("the browser closed the stream inside a message")
    return body


def write_message(stream: BinaryIO, body: bytes) -> None:
    """One native message, as the browser writes them (for tests and tools)."""
    stream.write(_LENGTH.pack(len(body)) + body)
    stream.flush()


def _exit_when_recorder_hangs_up(connection: socket.socket) -> None:
    try:
        while connection.recv(4096):
            pass  # the recorder says nothing; anything it sends is ignored
    except OSError:
        pass
    os._exit(0)  # the main thread is blocked reading the browser's stdin


def forward(stream: BinaryIO, connection: socket.socket) -> int:
    """Pass the browser's reports to the recorder until either side ends; returns how many."""
    forwarded = 0
    while (message := read_message(stream)) is not None:
        try:
            report = decode_report(message)
        except ReportError as error:
            print(f"demotrace browser host: dropped a message that is not a report: {error}", file=sys.stderr)
            continue
        connection.sendall(encode_report(report) + b"\n")
        forwarded += 1
    return forwarded


def main() -> int:
    path = default_browser_socket()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError as error:
        # The browser shows a host's stderr in its log: say why, once, and let the extension retry later.
        print(f"demotrace browser host: no recorder listens on {path} ({error})", file=sys.stderr)
        return 0
    threading.Thread(target=_exit_when_recorder_hangs_up, args=(connection,), daemon=True).start()
    try:
        forward(sys.stdin.buffer, connection)
    except (HostError, OSError) as error:
        print(f"demotrace browser host: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
