"""How large a frame may say it is, checked before a pixel is decoded.

A few bytes of PNG, WebP or delta can claim gigapixels. The collector refuses a frame whose declared
size is out of bounds when it arrives (it never decodes images itself); whoever decodes one later
(frames/resolver.py) first checks that the image's own header says the same size.
"""

from __future__ import annotations

import io

from PIL import Image

from demotrace.frames.delta import FrameCodecError, delta_size
from demotrace.protocol import DELTA_MEDIA_TYPE

MAX_FRAME_SIDE = 16384
MAX_FRAME_PIXELS = 64 * 1024 * 1024
"""64 Mpx: an 8K monitor is 33 Mpx."""


def check_frame_size(width: int, height: int) -> None:
    """Raise FrameCodecError unless a ``width`` x ``height`` frame is within bounds."""
    sides_fit = 0 < width <= MAX_FRAME_SIDE and 0 < height <= MAX_FRAME_SIDE
    if not sides_fit or width * height > MAX_FRAME_PIXELS:
        raise FrameCodecError(
            f"frame of {width}x{height} is outside the bounds (sides up to {MAX_FRAME_SIDE}, "
            f"{MAX_FRAME_PIXELS // (1024 * 1024)} Mpx)"
        )


def check_image_header(width: int, height: int, media_type: str, data: bytes) -> None:
    """Raise FrameCodecError unless the encoded image's header says ``width`` x ``height`` (within
    bounds): reads the header only, so nothing is allocated for pixels yet."""
    check_frame_size(width, height)
    declared = image_header_size(media_type, data)
    if declared != (width, height):
        raise FrameCodecError(f"frame says {width}x{height} but its image is {declared[0]}x{declared[1]}")


def image_header_size(media_type: str, data: bytes) -> tuple[int, int]:
    """The width and height an encoded frame image (PNG, WebP or delta) says it has, from its header."""
    if media_type == DELTA_MEDIA_TYPE:
        return delta_size(data)
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise FrameCodecError(f"frame image ({media_type}) has no readable header: {error}") from error
