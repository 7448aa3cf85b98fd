"""Dataset side: every frame back as a full image, deltas rebuilt from their chain.

``resolving_loader(load_frame)`` wraps any frame loader so that every frame comes back as a full
image (deltas are rebuilt from their chain, with an LRU cache of decoded images so a chain is decoded
once). A frame whose chain is broken (a base missing or undecodable) resolves to None: never a wrong
image. ``image_error`` measures how far a rebuilt image is from its original (tests, benchmarks).
"""

from __future__ import annotations

import io
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from PIL import Image, ImageChops

from demotrace.frames.bounds import check_image_header
from demotrace.frames.delta import FrameCodecError, apply_delta, parse_delta
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

    Decoded images are kept in an LRU cache (``cache_size`` images, ~6 MB each at 1080p) so that
    resolving a session's frames in order decodes each one once. Resolved frames are encoded as
    ``output`` ("png" or "webp-lossless"). Key frames are returned as stored.
    """

    def __init__(self, load_frame: LoadFrame, *, cache_size: int = 16, output: ImageCodec = "png") -> None:
        if output == "webp":
            raise ValueError(
                "resolved frames are encoded losslessly: output must be 'png' or 'webp-lossless'"
            )
        self._load_frame = load_frame
        self._cache_size = cache_size
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._output = output
        self._output_settings = EncodingSettings(png_level=6, method=4)
        self.decoded = 0  # frames decoded so far (cache misses): for tests and benchmarks

    def __call__(self, frame_id: str) -> Frame | None:
        return self.resolve(frame_id)

    def resolve(self, frame_id: str) -> Frame | None:
        """The frame as a full image, or None if it (or any frame its chain needs) is missing or corrupt."""
        frame = self._load_frame(frame_id)
        if frame is None or frame.media_type != DELTA_MEDIA_TYPE:
            return frame
        image = self.image(frame_id, frame)
        if image is None:
            return None
        return msgspec.structs.replace(
            frame,
            media_type=CODEC_MEDIA_TYPES[self._output],
            data=encode_image(image, self._output, self._output_settings),
            base_frame_id=None,
        )

    def image(self, frame_id: str, frame: Frame | None = None) -> Image.Image | None:
        """The decoded pixels of a frame (a shared cached image: do not modify it), or None."""
        # Walk back to a cached image or a key frame, then apply the deltas forward.
        pending: list[tuple[str, Frame]] = []
        current_id: str | None = frame_id
        base: Image.Image | None = None
        while current_id is not None:
            cached = self._images.get(current_id)
            if cached is not None:
                self._images.move_to_end(current_id)
                base = cached
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
            for pending_id, pending_frame in reversed(pending):
                base = self._decode(pending_frame, base)
                self._remember(pending_id, base)
        except FrameCodecError as error:
            log.warning("frame %s cannot be rebuilt: %s", frame_id, error)
            return None
        return base

    def _decode(self, frame: Frame, base: Image.Image | None) -> Image.Image:
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
            return image.convert("RGB")
        if base is None:
            raise FrameCodecError(f"delta frame {frame.frame_id} has no base frame")
        return apply_delta(base, parse_delta(frame.data))

    def _remember(self, frame_id: str, image: Image.Image) -> None:
        self._images[frame_id] = image
        self._images.move_to_end(frame_id)
        while len(self._images) > self._cache_size:
            self._images.popitem(last=False)


def resolving_loader(load_frame: LoadFrame, *, cache_size: int = 16, output: ImageCodec = "png") -> LoadFrame:
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
