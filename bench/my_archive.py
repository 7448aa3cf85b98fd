"""The employee's "download everything" archive: peak memory while streaming it, against holding the
whole archive at once (what a response built in memory would need), in the same run.

    .venv/bin/python bench/my_archive.py [--frames 40]

A collector (SQLite + blob folder) gets one session of noisy 1024x768 PNG frames (incompressible: the
archive is as large as the frames); then the archive is streamed and its pieces dropped, then built
whole, each in a fresh process: the peak resident memory (ru_maxrss) above the memory in use just
before.
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy
import psutil
import zstandard
from PIL import Image

from demotrace.collector.app import create_app
from demotrace.collector.my_archive import stream_archive
from demotrace.collector.server import ServerThread
from demotrace.model import Frame, encode_record
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

MIB = 1024 * 1024


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def noisy_png(seed: int) -> bytes:
    pixels = numpy.random.default_rng(seed).integers(0, 256, (768, 1024, 3), dtype=numpy.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def fill(folder: Path, frames: int) -> None:
    app = create_app(folder, retention_interval_s=None)
    compressor = zstandard.ZstdCompressor(level=1)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        enrolled = client.post("/v1/enroll", json={"device_name": "bench", "person_id": "p-bench"}).json()
        headers = {"Authorization": f"Bearer {enrolled['token']}", "Content-Type": RECORD_MEDIA_TYPE}
        for index in range(frames):
            frame = Frame(
                frame_id=f"s-f{index}",
                session_id="s",
                device_id="x",
                t=float(index),
                wall=1.7e9 + index,
                left=0,
                top=0,
                width=1024,
                height=768,
                media_type="image/png",
                data=noisy_png(index),
            )
            body = compressor.compress(encode_record(frame))
            client.put(f"/v1/records/{record_id_of(frame)}", content=body, headers=headers).raise_for_status()


def measure(folder: Path, mode: str) -> None:
    """In a fresh process: the archive streamed (pieces dropped) or built whole; prints figures."""
    data = create_app(folder, retention_interval_s=None).state.my_data
    before = psutil.Process().memory_info().rss / MIB  # now, not the peak: setup may have gone higher
    started = time.perf_counter()
    size = largest = 0
    if mode == "stream":
        for piece in stream_archive(data, "p-bench"):
            size += len(piece)
            largest = max(largest, len(piece))
    else:
        whole = b"".join(stream_archive(data, "p-bench"))
        size = largest = len(whole)
    print(f"{mode} {size} {largest} {time.perf_counter() - started:.2f} {peak_mib() - before:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1])
        return 0
    with tempfile.TemporaryDirectory() as folder:
        fill(Path(folder), args.frames)
        results = {}
        for mode in ("stream", "whole"):
            line = subprocess.run(
                [sys.executable, __file__, "--measure", folder, mode],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            results[mode] = (int(line[1]), int(line[2]), float(line[3]), float(line[4]))
    size, largest, seconds, grown = results["stream"]
    whole_grown = results["whole"][3]
    print(f"archive: {args.frames} frames of 1024x768 noise, {size / MIB:.1f} MiB")
    print(f"streamed in {seconds:.1f} s ({size / MIB / seconds:.0f} MiB/s)")
    print(f"largest piece handed on: {largest / MIB:.2f} MiB")
    print(f"peak RSS growth while streaming: {grown:.1f} MiB")
    print(f"peak RSS growth building it whole (baseline): {whole_grown:.1f} MiB")
    print(f"streaming / baseline: {grown / max(whole_grown, 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
