"""The OCR worker's wire protocol over its stdin/stdout (anonymous pipes, never a file): a 4-byte length
and a MessagePack ``OcrRequest``, then the raw pixels: one text line's grey levels to read, or a whole
frame to scrub (grey, RGB, or a grab's own BGRX bytes); the answer is a 4-byte length and an
``OcrReply`` with the line's words, or the frame's boxes to paint. Shared by the
recorder's side (``ocr_process``) and the worker (``ocr_worker``)."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import IO, Literal

import msgspec

_LENGTH = struct.Struct("<I")
# A request header or reply is small; anything bigger is a broken stream, not a message.
MAX_MESSAGE_BYTES = 1 << 20

BoxTuple = tuple[int, int, int, int]


class OcrRequest(msgspec.Struct, tag=True):
    """``read``: the words of one grey image (a text line, already upscaled by ``scale``; ``sparse``
    for a block of lines). ``scrub``: the boxes to paint on a frame of ``monitor``, read there whole
    (the bands reader). ``forget``: drop what the worker remembers of the screen."""

    op: Literal["read", "scrub", "forget"]
    monitor: BoxTuple = (0, 0, 0, 0)  # left, top, width, height
    width: int = 0
    height: int = 0
    pixel_bytes: int = 0  # raw pixel bytes that follow the header
    layout: Literal["RGB", "BGRX", "L"] = "RGB"  # BGRX: a grab's own bytes, 4 per pixel; L: grey
    scale: int = 1
    sparse: bool = False


WordTuple = tuple[str, BoxTuple, float]  # text, box (left, top, right, bottom) in unscaled pixels, confidence


class OcrReply(msgspec.Struct):
    words: list[WordTuple] = []
    boxes: list[BoxTuple] = []
    regions: list[BoxTuple] = []
    ocr_seconds: float = 0.0
    error: str = ""


Payload = bytes | bytearray | memoryview | Iterable[bytes]  # the bytes, or their pieces in order


def write_message(stream: IO[bytes], message: msgspec.Struct, payload: Payload = b"") -> None:
    header = msgspec.msgpack.encode(message)
    stream.write(_LENGTH.pack(len(header)))
    stream.write(header)
    if isinstance(payload, bytes | bytearray | memoryview):
        if payload:
            stream.write(payload)
    else:
        for piece in payload:
            stream.write(piece)
    stream.flush()


def read_exactly(stream: IO[bytes], count: int) -> bytes:
    data = stream.read(count)
    if data is None or len(data) != count:
        raise EOFError(f"stream ended after {0 if data is None else len(data)} of {count} bytes")
    return data


def read_message(stream: IO[bytes], kind: type[OcrRequest] | type[OcrReply]) -> OcrRequest | OcrReply:
    (length,) = _LENGTH.unpack(read_exactly(stream, _LENGTH.size))
    if length > MAX_MESSAGE_BYTES:
        raise EOFError(f"a {length}-byte message is not part of this protocol")
    return msgspec.msgpack.decode(read_exactly(stream, length), type=kind)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "BoxTuple",
    "OcrReply",
    "OcrRequest",
    "WordTuple",
    "read_exactly",
    "read_message",
    "write_message",
]
