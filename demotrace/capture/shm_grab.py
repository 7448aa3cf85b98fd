"""Grab the screen through MIT-SHM straight into a frame buffer: the X server writes the pixels there.

mss (MIT-SHM backend) has the X server write the screen into one shared segment of its own and then
copies it into a new 8 MB bytearray for every grab. Here each frame buffer (a memfd mapping, see
``frames.FrameBuffers``) is itself attached to mss's connection as a segment, with mss's own XCB
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

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from demotrace.capture.frames import FrameBuffer


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
