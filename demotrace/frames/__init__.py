"""Frames: the grabbed pixels, how they are encoded to fit the upload budget, and how they are rebuilt.

Shared by capture and dataset code: these modules import only the model, the wire protocol, the
standard library, msgspec, Pillow, numpy and zlib-ng. Each imports only the ones listed before it.

- ``settings``: ``EncodingSettings`` and the settings each power state gets (``choose_encoding``).
- ``banded_png``: a whole screen as PNG in separately compressed bands of rows (the dataset's images:
  a frame of a chain recompresses only the bands it changed).
- ``pixels``: ``ScreenPixels``, a grab's own BGRX buffer, and the tile grid laid over it.
- ``images``: one image as PNG or WebP bytes (``encode_adaptive`` goes lossy only where that is far
  smaller), PNG straight from screen pixels.
- ``delta``: the delta wire format (changed tiles packed in one image, and a bitmap of which).
- ``encoder``: ``FrameEncoder``, capture side: key frames, deltas and dedup, one chain per monitor.
- ``resolver``: ``resolving_loader``, dataset side: every frame back as a full image.
"""
