"""The frames of a dataset's steps, written once each into OUT/images/ in their stored encoding."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from demotrace.dataset.export.agentnet import ImageRef, ImageRegion
from demotrace.model import Frame

IMAGES_DIR = "images"

_EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpeg", "image/jpg": "jpeg"}
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def image_extension(media_type: str) -> str:
    known = _EXTENSIONS.get(media_type.lower())
    if known is not None:
        return known
    subtype = media_type.rpartition("/")[2].lower()
    return subtype if subtype.isalnum() else "bin"


def image_stem(frame_id: str) -> str:
    """A file name for a frame id that cannot escape the images folder."""
    if _SAFE_ID.fullmatch(frame_id):
        return frame_id
    return "f-" + hashlib.sha256(frame_id.encode()).hexdigest()[:32]


class ImageWriter:
    """Writes each frame once and remembers where, so steps sharing a frame share a file.

    ``name_of(frame_id)`` gives the file's stem (a pseudonym in a build: frame ids are store keys)."""

    def __init__(
        self,
        load_frame: Callable[[str], Frame | None],
        images_dir: Path,
        name_of: Callable[[str], str] = image_stem,
    ) -> None:
        self._load_frame = load_frame
        self._images_dir = images_dir
        self._name_of = name_of
        self.refs: dict[str, ImageRef | None] = {}  # by frame id; None: the frame could not be loaded
        self.files: dict[str, int] = {}  # file name → bytes

    def image_for(self, frame_id: str) -> ImageRef | None:
        if frame_id not in self.refs:
            self.refs[frame_id] = self._write(frame_id)
        return self.refs[frame_id]

    def _write(self, frame_id: str) -> ImageRef | None:
        frame = self._load_frame(frame_id)
        if frame is None:
            return None
        name = f"{image_stem(self._name_of(frame_id))}.{image_extension(frame.media_type)}"
        (self._images_dir / name).write_bytes(frame.data)
        self.files[name] = len(frame.data)
        region = ImageRegion(left=frame.left, top=frame.top, width=frame.width, height=frame.height)
        return ImageRef(path=f"{IMAGES_DIR}/{name}", region=region)
