"""Dataset side: every frame back as a full image, deltas rebuilt from their chain.

``resolving_loader(load_frame)`` wraps any frame loader so that every frame comes back as a full
image. A frame that is a complete image already (a key frame, an old full frame) comes back as stored:
no decode, no encode. A delta is applied in place to the pixels of its chain (one array per chain,
no copy per frame) and written as a banded PNG (``banded_png``): only the bands its tiles touch are
compressed again. A frame whose chain is broken (a base missing or undecodable) resolves to None:
never a wrong image. ``image_error`` measures how far a rebuilt image is from its original.
"""

from __future__ import annotations

import io
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy
from PIL import Image, ImageChops

from demotrace.frames.banded_png import PNG_LEVEL, BandedPng
from demotrace.frames.bounds import check_image_header
from demotrace.frames.delta import FrameCodecError, parse_delta, paste_tiles
from demotrace.frames.images import CODEC_MEDIA_TYPES, encode_image
from demotrace.frames.settings import EncodingSettings, ImageCodec
from demotrace.model import Frame
from demotrace.protocol import DELTA_MEDIA_TYPE

log = logging.getLogger(__name__)

# Decoding a frame never walks more links than this, whatever the stored data claims.
MAX_CHAIN_WALK = 10_000

LoadFrame = Callable[[str], Frame | None]


class FrameResolver:
    """Gives every frame as a full image Frame, rebuilding deltas from their chain.

    It keeps up to ``cache_size`` screens (~6 MB each at 1080p, plus their compressed PNG bands), each
    under the id of the frame it shows now. Resolving a frame walks back to a kept screen or a key frame
    and applies the deltas forward *in place*: the screen then shows the new frame and no longer the
    old one. So resolving a chain's frames in order (as a build does) decodes each frame once; going
    back rebuilds from the key frame. Resolved deltas are ``output``: "png" (banded, see above, zlib
    ``png_level``) or "webp-lossless". Frames that are whole images already are returned as stored.
    """

    def __init__(
        self,
        load_frame: LoadFrame,
        *,
        cache_size: int = 4,
        output: ImageCodec = "png",
        png_level: int = PNG_LEVEL,
    ) -> None:
        if output == "webp":
            raise ValueError(
                "resolved frames are encoded losslessly: output must be 'png' or 'webp-lossless'"
            )
        self._load_frame = load_frame
        self._cache_size = max(1, cache_size)
        self._screens: OrderedDict[str, BandedPng] = OrderedDict()
        self._output = output
        self._png_level = png_level
        self.decoded = 0  # frames decoded or applied so far (cache misses): for tests and benchmarks

    def __call__(self, frame_id: str) -> Frame | None:
        return self.resolve(frame_id)

    def resolve(self, frame_id: str) -> Frame | None:
        """The frame as a full image, or None if it (or any frame its chain needs) is missing or corrupt."""
        frame = self._load_frame(frame_id)
        if frame is None or frame.media_type != DELTA_MEDIA_TYPE:
            return frame
        screen = self._screen(frame_id, frame)
        if screen is None:
            return None
        if self._output == "png":
            data = screen.png()
        else:
            data = encode_image(Image.fromarray(screen.pixels), self._output, EncodingSettings(method=4))
        return msgspec.structs.replace(
            frame, media_type=CODEC_MEDIA_TYPES[self._output], data=data, base_frame_id=None
        )

    def image(self, frame_id: str, frame: Frame | None = None) -> Image.Image | None:
        """The decoded pixels of a frame (a new image, the caller's to keep), or None."""
        screen = self._screen(frame_id, frame)
        return Image.fromarray(screen.pixels) if screen is not None else None

    def _screen(self, frame_id: str, frame: Frame | None = None) -> BandedPng | None:
        """The kept screen now showing ``frame_id``, rebuilt as needed, or None."""
        # Walk back to a kept screen or a key frame, then apply the deltas forward.
        pending: list[tuple[str, Frame]] = []
        current_id: str | None = frame_id
        screen: BandedPng | None = None
        while current_id is not None:
            screen = self._screens.pop(current_id, None)
            if screen is not None:
                break
            current = (
                frame if (frame is not None and current_id == frame_id) else self._load_frame(current_id)
            )
            if current is None:
                log.warning("frame %s cannot be rebuilt: frame %s is missing", frame_id, current_id)
                return None
            if len(pending) >= MAX_CHAIN_WALK or any(seen == current_id for seen, _ in pending):
                log.warning("frame %s cannot be rebuilt: its chain loops or is too long", frame_id)
                return None
            pending.append((current_id, current))
            current_id = current.base_frame_id if current.media_type == DELTA_MEDIA_TYPE else None
        try:
            for _, pending_frame in reversed(pending):
                screen = self._apply(pending_frame, screen)
        except FrameCodecError as error:
            log.warning("frame %s cannot be rebuilt: %s", frame_id, error)
            return None
        assert screen is not None  # the walk ends at a kept screen or a key frame
        self._screens[frame_id] = screen
        while len(self._screens) > self._cache_size:
            self._screens.popitem(last=False)
        return screen

    def _apply(self, frame: Frame, screen: BandedPng | None) -> BandedPng:
        """``screen`` (None before a key frame) turned into ``frame``'s pixels."""
        self.decoded += 1
        # The header must say the frame's own (bounded) size before any pixel is allocated.
        check_image_header(frame.width, frame.height, frame.media_type, frame.data)
        if frame.media_type != DELTA_MEDIA_TYPE:
            try:
                image = Image.open(io.BytesIO(frame.data))
                image.load()
            except (OSError, SyntaxError, ValueError) as error:
                raise FrameCodecError(
                    f"frame {frame.frame_id} ({frame.media_type}) does not decode: {error}"
                ) from error
            return BandedPng(numpy.array(image.convert("RGB")), level=self._png_level)
        if screen is None:
            raise FrameCodecError(f"delta frame {frame.frame_id} has no base frame")
        for top, bottom in paste_tiles(screen.pixels, parse_delta(frame.data)):
            screen.changed(top, bottom)
        return screen


def resolving_loader(load_frame: LoadFrame, *, cache_size: int = 4, output: ImageCodec = "png") -> LoadFrame:
    """Wrap a frame loader (``spool.load_frame``, ``CollectorReader.load_frame``): deltas come back whole."""
    return FrameResolver(load_frame, cache_size=cache_size, output=output).resolve


def is_delta(frame: Frame) -> bool:
    return frame.media_type == DELTA_MEDIA_TYPE


def frame_needs(frame: Frame) -> str | None:
    """The frame id this frame cannot be shown without (its base), or None for a self-contained frame."""
    return frame.base_frame_id if is_delta(frame) else None


@dataclass(frozen=True)
class ImageError:
    """How far a rebuilt image is from the original: PSNR in dB (inf when equal), max channel error."""

    psnr: float
    max_abs: int


def image_error(original: Image.Image, rebuilt: Image.Image) -> ImageError:
    """PSNR and the largest per-channel difference between two same-sized images."""
    first, second = original.convert("RGB"), rebuilt.convert("RGB")
    if first.size != second.size:
        raise ValueError(f"cannot compare a {first.size} image with a {second.size} one")
    difference = ImageChops.difference(first, second)
    max_abs = max(int(band[1]) for band in difference.getextrema() if isinstance(band, tuple))
    if max_abs == 0:
        return ImageError(math.inf, 0)
    histogram = difference.histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (first.width * first.height * 3)
    return ImageError(10 * math.log10(255**2 / mse), max_abs)
