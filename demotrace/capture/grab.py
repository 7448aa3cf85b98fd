"""Grab the screen into reused frame buffers: mapped outside the heap, written by the X server.

``grab_pixels`` grabs one monitor as ``ScreenPixels``, into a buffer of a ``FrameBuffers`` pool when
given one. Where it can, the grab goes through MIT-SHM straight into that buffer (``shm_grab_into``):
the X server writes the pixels there.

mss (MIT-SHM backend) has the X server write the screen into one shared segment of its own and then
copies it into a new 8 MB bytearray for every grab. Here each frame buffer (a memfd mapping, see
``FrameBuffers``) is itself attached to mss's connection as a segment, with mss's own XCB
bindings, and the server writes each grab into the buffer it is for: no copy at all, and mss's segment
is never touched, so its 8 MB never become resident. A pooled buffer is attached once, the first time
it is grabbed into, and stays attached (the server drops the segments with the connection); a one-off
buffer is attached for its one grab.

This reaches into mss's backend (version pinned in uv.lock). Anything unexpected - another backend,
MIT-SHM unavailable (a remote display), a changed mss, no memfd - makes ``shm_grab_into`` return False
having written nothing, and the caller grabs the public way. ``tests/test_shm_grab.py`` checks that
the shared-memory path is the one taken on Xvfb and gives the same pixels as mss's public grab.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from demotrace.frames.pixels import SCREEN_BYTES_PER_PIXEL, ScreenPixels, WritableBuffer
from demotrace.model import Monitor

# Frame buffers kept for reuse: a grab, and one in OCR or encoding. (Four while OCR took a second a
# frame and one more usually waited for it; three while the encoder kept the last frame as its delta
# base, which is now its tiles' signatures: frames/tile_signatures.py. A burst that outruns OCR gets
# one-off mappings.)
FRAME_BUFFERS = 2
# Frames the recorder lets be in flight at once (grabbed, waiting, in OCR, encoding): the pooled buffers,
# 8 MB each at 1080p, resident while they live. With no cap a burst of actions had five in flight
# (bench/record.py: the recorder's peak ~18 MiB above its steady state). A grab past the cap waits for
# the encoder to let go of a frame, as it waited for room on the OCR queue before; on bench/record.py
# --seconds 300 no grab had to wait.
MOST_FRAMES_IN_FLIGHT = FRAME_BUFFERS
# A frame held elsewhere past this (a lingering reference) must not stop the grabs: one more then.
ROOM_WAIT_SECONDS = 5.0


@dataclass(eq=False)
class FrameBuffer:
    """One frame-sized mapping outside the heap. ``fd`` is the memfd behind it (None where memfd is
    unavailable): the X server can then write a grab straight into it (see ``shm_grab_into``). Once a pooled
    buffer is attached, ``segment`` is (the mss backend it is attached on, its MIT-SHM segment)."""

    view: memoryview
    fd: int | None
    pooled: bool
    segment: Any = None

    def close(self) -> None:
        """Close the memfd (the mapping goes when its last view does); for buffers that are not reused."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _map(size: int) -> tuple[memoryview, int | None]:
    try:
        fd = os.memfd_create("demotrace-frame", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return memoryview(mmap.mmap(-1, size)), None
    try:
        os.ftruncate(fd, size)
        return memoryview(mmap.mmap(fd, size)), fd
    except BaseException:
        os.close(fd)
        raise


class FrameBuffers:
    """Frame-sized buffers reused from grab to grab, mapped outside the heap; one pool per ``mss.MSS``.

    A frame's buffer lives from the grab thread to the encoder's chain (freed on another thread,
    seconds later). Allocated from the heap, other allocations landed in the holes such buffers left
    and the heap grew by a frame every minute or so (malloc statistics during bench/record.py: 60-85
    MB of heap for 26-51 MB in use); mapped afresh for every frame, each grab paid ~2,000 page faults
    (7 ms of CPU for 8 MB). Here at most ``limit`` mappings are made and reused for as long as recording
    lasts. A grab never waits: when all of them are in use (OCR fell behind in a burst of actions) it
    gets a one-off mapping, dropped as soon as its frame is encoded, so what stays resident is bounded
    by ``limit``. The mappings are memfds, for the X server to write grabs into. Thread-safe.

    ``most`` (optional) caps the buffers lent at once: ``wait_for_room`` blocks until fewer are lent."""

    def __init__(self, limit: int = FRAME_BUFFERS, most: int | None = None) -> None:
        self.limit = limit
        self.most = most
        self._free: list[FrameBuffer] = []
        self._lent: dict[int, FrameBuffer] = {}  # by id() of the view: held here, so the id is not reused
        self._pooled = 0
        self._closed = False
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self.made = 0  # mappings made so far, one-off ones included (for tests and benchmarks)

    def take(self, size: int) -> FrameBuffer:
        """A buffer of ``size`` bytes, to be given back (``give_back(buffer.view)``) when its pixels go."""
        with self._lock:
            buffer = next((free for free in self._free if len(free.view) == size), None)
            if buffer is not None:
                self._free.remove(buffer)
            else:
                self.made += 1
                pooled = self._pooled < self.limit and not self._closed
                self._pooled += pooled
        if buffer is None:
            buffer = FrameBuffer(*_map(size), pooled=pooled)
        with self._lock:
            self._lent[id(buffer.view)] = buffer
        return buffer

    def wait_for_room(self, timeout: float = ROOM_WAIT_SECONDS) -> float:
        """Block until fewer than ``most`` buffers are lent (at most ``timeout`` seconds); returns the
        seconds waited."""
        if self.most is None:
            return 0.0
        started = time.monotonic()
        with self._returned:
            self._returned.wait_for(lambda: len(self._lent) < (self.most or 0), timeout)
        return time.monotonic() - started

    def give_back(self, view: WritableBuffer) -> None:
        with self._lock:
            buffer = self._lent.pop(id(view), None)
            if buffer is None:
                return
            self._returned.notify_all()
            if buffer.pooled and not self._closed:
                self._free.append(buffer)
                return
        buffer.close()

    def clear(self) -> None:
        """Drop every buffer (recording stopped): their pixels do not linger in memory."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for buffer in free:
            buffer.close()


def shm_grab_into(screen: Any, box: dict[str, int], buffer: FrameBuffer) -> bool:
    """Grab ``box`` with an ``mss.MSS`` into ``buffer`` (exactly width*height*4 bytes, BGRX).

    Returns False when the shared-memory path cannot be used."""
    try:
        from mss.exception import ScreenShotError
        from mss.linux.base import ALL_PLANES
        from mss.linux.xcb import generate_id
        from mss.linux.xcbgen import ImageFormat, ShmSeg, shm_attach_fd, shm_detach, shm_get_image
        from mss.linux.xcbhelpers import XError
        from mss.linux.xshmgetimage import MSSImplXShmGetImage, ShmStatus
    except ImportError:
        return False
    impl = getattr(screen, "_impl", None)
    lock = getattr(screen, "_lock", None)
    if not isinstance(impl, MSSImplXShmGetImage) or lock is None or impl.conn is None:
        return False
    if impl.shm_status is ShmStatus.UNAVAILABLE or buffer.fd is None:
        return False
    if len(buffer.view) != box["width"] * box["height"] * 4:
        return False
    with lock:
        attached = buffer.segment
        if attached is not None and attached[0] is impl:
            segment = attached[1]
        else:
            segment = ShmSeg(generate_id(impl.conn).value)
            try:
                # XCB closes the descriptor it is given, hence a duplicate.
                shm_attach_fd(impl.conn, segment, os.dup(buffer.fd), read_only=False)
            except (XError, OSError):
                return False
            if buffer.pooled:
                buffer.segment = (impl, segment)
        try:
            reply = shm_get_image(
                impl.conn,
                impl.drawable,
                box["left"],
                box["top"],
                box["width"],
                box["height"],
                ALL_PLANES,
                ImageFormat.ZPixmap,
                segment,
                0,
            )
        except XError:
            return False
        finally:
            if not buffer.pooled:
                shm_detach(impl.conn, segment)
        if reply.depth != impl.drawable_depth or reply.visual != impl.drawable_visual_id:
            raise ScreenShotError(
                f"the X server sent an image of depth {reply.depth}, not {impl.drawable_depth}"
            )
    return True


def grab_pixels(screen: Any, monitor: Monitor, buffers: FrameBuffers | None = None) -> ScreenPixels:
    """Grab one monitor with an ``mss.MSS`` (owned by the calling thread) as BGRX pixels: the grab's
    own buffer, or (with ``buffers``, a pool for this ``screen``) a reused one, given back to
    ``buffers`` when the pixels are dropped. Never a Pillow image: that would copy 8 MB at 1080p."""
    box = {"left": monitor.left, "top": monitor.top, "width": monitor.width, "height": monitor.height}
    if buffers is None:
        shot = screen.grab(box)
        return ScreenPixels(shot.raw, *shot.size)
    buffer = buffers.take(monitor.width * monitor.height * SCREEN_BYTES_PER_PIXEL)
    try:
        if not shm_grab_into(screen, box, buffer):
            shot = screen.grab(box)
            if shot.size != (monitor.width, monitor.height):  # scaled (HiDPI elsewhere): no reuse
                buffers.give_back(buffer.view)
                return ScreenPixels(shot.raw, *shot.size)
            buffer.view[:] = shot.raw
    except BaseException:
        buffers.give_back(buffer.view)
        raise
    return ScreenPixels(buffer.view, monitor.width, monitor.height, release=buffers.give_back)
