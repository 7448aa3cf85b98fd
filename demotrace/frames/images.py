"""One image as PNG or WebP bytes: lossless for text and UI, lossy only where that is far smaller.

Also the old full-frame choice (``choose_media_type``: PNG for flat screens, lossy WebP otherwise) and
the fixed settings of a self-contained frame image, kept for tools that want one image per frame and
for re-encoding a scrubbed frame in its own media type.
"""

from __future__ import annotations

import io
from typing import Literal

# PngImagePlugin and WebPImagePlugin register the two formats frames are saved in, up front: else the
# first WebP save makes Pillow import all of its ~40 format plugins (measured: 0.2 s of CPU in the
# middle of a recording, and ~50 modules' memory for good).
from PIL import Image, PngImagePlugin, WebPImagePlugin  # noqa: F401

from demotrace.frames.banded_png import png_of_stream
from demotrace.frames.pixels import ScreenPixels
from demotrace.frames.settings import EncodingSettings, ImageCodec

CODEC_MEDIA_TYPES: dict[ImageCodec, str] = {
    "png": "image/png",
    "webp-lossless": "image/webp",
    "webp": "image/webp",
}
# Photo-like content goes lossy only when that makes it at least this many times smaller.
LOSSY_MIN_GAIN = 3
# ... and is tried lossy only when it has more colours than this (or than a tenth of its pixels, for
# small images): photos, video and gradients have thousands; text and UI, even dense and anti-aliased,
# a few hundred (measured on the demo session's frames: at most ~1,000 on a whole screen, ~200 in a
# delta's tiles, where lossy was tried on half of the deltas and never kept).
LOSSY_MIN_COLOURS = 4096

# Self-contained frame images: choose_media_type's choice, and a scrubbed frame re-encoded as it was.
# A thumbnail with at most this many colours is "flat": PNG beats lossy WebP there.
FLAT_SCREEN_MAX_COLOURS = 1024
THUMBNAIL_REDUCTION = 4
WEBP_QUALITY = 75
# WebP effort 2 is within ~6 % of the default size at ~1/8 of its time.
WEBP_METHOD = 2
PNG_COMPRESS_LEVEL = 6


def encode_image(image: Image.Image | ScreenPixels, codec: ImageCodec, settings: EncodingSettings) -> bytes:
    """One image as PNG, lossless WebP or lossy WebP bytes. Screen pixels go to PNG as they are (see
    ``screen_png``); to WebP, through a Pillow copy."""
    if isinstance(image, ScreenPixels):
        if codec == "png":
            return screen_png(image, settings.png_level)
        image = image.image()
    buffer = io.BytesIO()
    if codec == "png":
        image.save(buffer, "PNG", compress_level=settings.png_level)
    elif codec == "webp-lossless":
        # In lossless mode Pillow's quality is the compression effort, not a quality.
        image.save(buffer, "WEBP", lossless=True, quality=settings.lossless_effort, method=settings.method)
    else:
        image.save(buffer, "WEBP", quality=settings.quality, method=settings.method)
    return buffer.getvalue()


def encode_adaptive(
    image: Image.Image | ScreenPixels, codec: ImageCodec, settings: EncodingSettings
) -> tuple[ImageCodec, bytes]:
    """Encode with ``codec``; if a lossless result is photo-sized, lossy WebP when that is far smaller.

    Text and UI compress losslessly to ~0.01 byte per pixel, and lossy WebP is no smaller there (and
    smears glyphs); photos, video and gradients take 0.1-0.3 byte per pixel losslessly and ~10x less
    lossy. So only a large lossless result with many colours is tried lossy, and lossy is kept only if
    it is at most ``1 / LOSSY_MIN_GAIN`` of the lossless size.
    """
    data = encode_image(image, codec, settings)
    limit = settings.lossy_above_bytes_per_pixel
    if codec == "webp" or limit is None or len(data) <= limit * image.width * image.height:
        return codec, data
    if not has_many_colours(image):
        return codec, data
    lossy = encode_image(image, "webp", settings)
    return ("webp", lossy) if len(lossy) * LOSSY_MIN_GAIN <= len(data) else (codec, data)


def has_many_colours(image: Image.Image | ScreenPixels) -> bool:
    """Whether an image has more colours than text and UI have (see LOSSY_MIN_COLOURS)."""
    view = image.stored_view() if isinstance(image, ScreenPixels) else image
    return view.getcolors(min(LOSSY_MIN_COLOURS, max(1, view.width * view.height // 10))) is None


def screen_png(pixels: ScreenPixels, level: int) -> bytes:
    """The pixels as an RGB PNG, compressed straight from their BGRX buffer.

    Pillow saves PNG from an RGB image only: a frame-sized copy of the screen first (measured: +18.5 MiB
    of peak RSS for a 1080p key frame, the recorder's largest transient). Pillow's PNG compressor (row
    filters and zlib, as its PNG writer uses) reads the buffer in place instead: its ``stored_view``
    packed as "BGR" puts the stored B, G, R out as R, G, B. Only the PNG container is written here.
    Same bytes as Pillow's PNG but for how the data is cut into IDAT chunks."""
    compressed = pixels.stored_view().tobytes("zip", "BGR", False, level)
    return png_of_stream(pixels.width, pixels.height, compressed)


def choose_media_type(thumbnail_colours: int | None) -> Literal["image/png", "image/webp"]:
    """PNG for flat screens (few colours: smaller and exact), lossy WebP for everything else.

    ``thumbnail_colours`` is None when the thumbnail has more than FLAT_SCREEN_MAX_COLOURS colours.
    """
    if thumbnail_colours is not None and thumbnail_colours <= FLAT_SCREEN_MAX_COLOURS:
        return "image/png"
    return "image/webp"
