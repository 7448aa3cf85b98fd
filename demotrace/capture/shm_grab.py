"""Grab the screen through mss's shared-memory segment straight into a reused buffer.

mss (MIT-SHM backend) has the X server write the screen into a shared segment and then copies it into
a new 8 MB bytearray for every grab: a frame-sized heap block per frame, freed seconds later on
another thread, and the holes such blocks leave made the recorder's heap grow over a session. Here
the same request is made with mss's own XCB bindings and the pixels are copied once, from the
segment into the caller's buffer (a reused mapping: see ``frames.FrameBuffers``).

This reaches into mss's backend (version pinned in uv.lock). Anything unexpected - another backend,
MIT-SHM unavailable (a remote display), a changed mss - makes ``shm_grab_into`` return False, and the
caller grabs the public way. ``tests/test_shm_grab.py`` checks that the shared-memory path is the
one taken on Xvfb and gives the same pixels as mss's public grab.
"""

from __future__ import annotations

from typing import Any


def shm_grab_into(screen: Any, box: dict[str, int], buffer: memoryview | bytearray) -> bool:
    """Grab ``box`` with an ``mss.MSS`` into ``buffer`` (BGRX, exactly width*height*4 bytes).

    Returns False, having written nothing, when the shared-memory path cannot be used."""
    try:
        from mss.exception import ScreenShotError
        from mss.linux.base import ALL_PLANES
        from mss.linux.xcbgen import ImageFormat, shm_get_image
        from mss.linux.xshmgetimage import MSSImplXShmGetImage, ShmStatus
    except ImportError:
        return False
    impl = getattr(screen, "_impl", None)
    lock = getattr(screen, "_lock", None)
    if not isinstance(impl, MSSImplXShmGetImage) or lock is None:
        return False
    if impl.shm_status is not ShmStatus.AVAILABLE:
        return False  # mss's public grab finds out (and falls back to GetImage) on its own first
    segment, mapping = getattr(impl, "_shmseg", None), getattr(impl, "_buf", None)
    size = box["width"] * box["height"] * 4
    if segment is None or mapping is None or impl.conn is None or len(buffer) != size or size > len(mapping):
        return False
    with lock:
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
        if reply.depth != impl.drawable_depth or reply.visual != impl.drawable_visual_id:
            raise ScreenShotError(
                f"the X server sent an image of depth {reply.depth}, not {impl.drawable_depth}"
            )
        with memoryview(mapping) as shared:
            buffer[:] = shared[:size]
    return True
