"""Reading request bodies within bounds: a size limit, a minimum rate, and memory reserved as bytes arrive.

A body that arrives slower than ``min_bytes_per_second`` (after ``grace_seconds``) is cut off with
408 and its connection closed, so a device on a dead link, or one that sends a byte a minute on
purpose, holds nothing for long. A client that hangs up mid-body is one log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import Request
from starlette.requests import ClientDisconnect

from demotrace.collector.errors import BadRequest, BodyTooSlow, ClientGone, PayloadTooLarge
from demotrace.collector.limits import MemoryReservation

# An oversized body that is at most this much larger than the limit is read and dropped before the 413,
# so the client gets the answer instead of a reset connection (and does not retry a hopeless upload).
_DRAIN_ALLOWANCE_FACTOR = 4


@dataclass(frozen=True)
class BodyPace:
    """The slowest a body may arrive: ``min_bytes_per_second`` on average once ``grace_seconds`` passed."""

    min_bytes_per_second: int
    grace_seconds: float

    def seconds_left(self, started: float, received: int, now: float) -> float:
        """How long the next chunk may take before the body falls below the pace."""
        return started + self.grace_seconds + received / self.min_bytes_per_second - now


def declared_length(request: Request) -> int | None:
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.isdigit():
        raise BadRequest("Content-Length is not a number")
    return int(header)


async def read_body(
    request: Request, limit: int, pace: BodyPace, memory: MemoryReservation | None = None
) -> bytes:
    """The request body, or PayloadTooLarge as soon as it is known to pass ``limit`` bytes, BodyTooSlow
    when it falls below ``pace``, ClientGone when the client hangs up. ``memory`` is charged as bytes
    arrive (Busy if the collector's budget is spent), so a slow body costs only what it has sent."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        if declared <= limit * _DRAIN_ALLOWANCE_FACTOR:
            await _paced(request, limit * _DRAIN_ALLOWANCE_FACTOR, pace, None)
        raise PayloadTooLarge(f"body is {declared} bytes, more than the {limit} allowed")
    return await _paced(request, limit, pace, memory)


async def _paced(request: Request, limit: int, pace: BodyPace, memory: MemoryReservation | None) -> bytes:
    chunks: list[bytes] = []
    total = 0
    started = time.monotonic()
    stream = request.stream().__aiter__()
    while True:
        wait = pace.seconds_left(started, total, time.monotonic())
        try:
            if wait <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), wait)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BodyTooSlow(
                f"body arrived slower than {pace.min_bytes_per_second} bytes/s "
                f"({total} bytes in {time.monotonic() - started:.0f} s): cut off"
            ) from None
        except ClientDisconnect:
            raise ClientGone(f"client hung up after {total} bytes of its body") from None
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"body is more than the {limit} bytes allowed")
        if memory is not None:
            memory.add(2 * len(chunk))  # the chunks, then their join
        chunks.append(chunk)
    return b"".join(chunks)


async def discard_body(request: Request, limit: int, pace: BodyPace) -> None:
    """Read and drop a refused request's body, up to ``limit`` bytes. A server that closes with unread
    data in flight may reset the connection before the client reads the answer (the lingering-close
    problem); worth avoiding for answers the client must act on, like ``exempt``."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        return
    try:
        await _paced(request, limit, pace, None)
    except (PayloadTooLarge, BodyTooSlow, ClientGone):
        return
