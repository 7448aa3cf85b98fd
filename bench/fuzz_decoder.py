"""Fuzz the collector's record decoder with atheris (libFuzzer, coverage-guided), for a fixed time.

The target is what the collector does with an upload body before anything is stored
(``ingest.decode_upload``: bounded zstd decompression, MessagePack decoding into our records, database
limits, frame bounds) and, for a frame, what a dataset build does before decoding its pixels (the
image header must match the declared size; a delta's header and tile map are parsed). Refusals with
our own errors (BadRequest, PayloadTooLarge, FrameCodecError) are the expected outcome; any other
exception, a hang past 10 s or more than 2 GiB resident is a crash.

The first byte of an input picks whether the rest is the body as sent or is compressed first, so
the fuzzer works on the MessagePack and the frame payloads too, not only on zstd's frame format.
Seeds: a batch with every event type and a session header, PNG, WebP and delta frames.

    .venv/bin/python -m bench.fuzz_decoder --seconds 300
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from PIL import Image

MAX_INPUT_BYTES = 64 * 1024
RSS_LIMIT_MB = 2048
TIMEOUT_S = 10
CRASH_LOG = "crashes.jsonl"
_DONE_LINE = re.compile(r"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(r"DONE +cov: (\d+) ft: (\d+) corp: (\d+)/")


@dataclass
class FuzzTally:
    seconds: float = 0.0
    executions: int = 0
    edges: int = 0  # Python branches of demotrace reached (msgspec and zstd are C: not counted)
    corpus: int = 0  # inputs the fuzzer kept for new coverage
    crashes: int = 0  # inputs that raised something other than our own refusals
    signatures: Counter[str] = field(default_factory=Counter)  # exception type and where it was raised
    fuzzer_stopped: str = ""  # libFuzzer's own finding (timeout, out of memory), if it stopped on one


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def seed_records() -> list[bytes]:
    """MessagePack of valid records of every kind: where the fuzzer starts from."""
    from demotrace.frames.delta import changed_tiles, encode_delta
    from demotrace.frames.pixels import ScreenPixels
    from demotrace.frames.settings import EncodingSettings
    from demotrace.model import (
        Batch,
        Button,
        Element,
        Event,
        Frame,
        FrameTaken,
        Key,
        Marker,
        Monitor,
        MovePath,
        PageElement,
        Record,
        Scroll,
        SessionHeader,
        Window,
        encode_record,
    )
    from demotrace.protocol import DELTA_MEDIA_TYPE

    header = SessionHeader("s1", "d1", "x11", 1920, 1080, [Monitor(0, 0, 1920, 1080)], 400, 4, 1.0, 1.7e9)
    events: list[Event] = [
        Key(1.0, 1.7e9, True, "a", 97, "a", ["shift"]),
        Button(1.1, 1.7e9, True, "left", 10, 20),
        Scroll(1.2, 1.7e9, 10, 20, 0, -1),
        MovePath(1.3, 1.7e9, [(1, 2, 0.0), (3, 4, 0.1)]),
        Window(1.4, 1.7e9, "XTerm", "bash", 42, 0, 0, 800, 600, 7),
        Element(1.5, 1.7e9, "click", PageElement("button", "Save", left=1, top=2, width=3, height=4), 5, 6),
        FrameTaken(1.6, 1.7e9, "f1", 0, 0, 64, 48, "click", 1.61),
        Marker(1.7, 1.7e9, "task_start", "File the report"),
    ]
    base = Image.new("RGB", (64, 48), (200, 200, 200))
    changed = base.copy()
    changed.paste((10, 20, 30), (16, 16, 32, 32))
    tiles = changed_tiles(base, changed, 16)
    delta = encode_delta(ScreenPixels.of_image(changed), tiles, 16, "png", EncodingSettings())
    webp = io.BytesIO()
    changed.save(webp, format="WEBP", lossless=True)
    records: list[Record] = [
        Batch("b1", "s1", "d1", 0, events, header),
        Frame("f1", "s1", "d1", 1.6, 1.7e9, 0, 0, 64, 48, "image/png", _png(64, 48, (1, 2, 3))),
        Frame("f2", "s1", "d1", 1.7, 1.7e9, 0, 0, 64, 48, "image/webp", webp.getvalue()),
        Frame("f3", "s1", "d1", 1.8, 1.7e9, 0, 0, 64, 48, DELTA_MEDIA_TYPE, delta, "f1"),
    ]
    return [encode_record(record) for record in records]


def write_seeds(folder: Path) -> None:
    compress = zstandard.ZstdCompressor(level=3).compress
    folder.mkdir(parents=True, exist_ok=True)
    for index, plain in enumerate(seed_records()):
        (folder / f"plain-{index}").write_bytes(b"\x01" + plain)  # compressed by the target
        (folder / f"body-{index}").write_bytes(b"\x00" + compress(plain))  # a body as a device sends it


def _run_child(out: Path, seconds: int) -> None:
    """The fuzzing process: atheris never returns, libFuzzer ends the process when the time is up."""
    import atheris

    with atheris.instrument_imports(include=["demotrace"]):
        from demotrace.collector.errors import CollectorError
        from demotrace.collector.ingest import DEFAULT_MAX_RECORD_BYTES, decode_upload
        from demotrace.frames.bounds import check_image_header
        from demotrace.frames.delta import FrameCodecError, parse_delta
        from demotrace.model import Frame
        from demotrace.protocol import DELTA_MEDIA_TYPE

    compress = zstandard.ZstdCompressor(level=1).compress
    crash_log = (out / CRASH_LOG).open("a")

    def decode(data: bytes) -> None:
        body = data[1:] if not data or data[0] % 2 == 0 else compress(data[1:])
        record = decode_upload(body, DEFAULT_MAX_RECORD_BYTES)
        if isinstance(record, Frame):
            check_image_header(record.width, record.height, record.media_type, record.data)
            if record.media_type == DELTA_MEDIA_TYPE:
                parse_delta(record.data)

    def target(data: bytes) -> None:
        try:
            decode(data)
        except (CollectorError, FrameCodecError):
            pass  # refused with a clear error: what bad input should get
        except Exception as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            signature = f"{type(error).__name__} at {Path(where.filename).name}:{where.lineno}"
            digest = hashlib.sha256(data).hexdigest()[:16]
            crash_input = out / f"crash-{digest}"
            crash_input.write_bytes(data)
            found = {"signature": signature, "error": str(error)[:300], "input": str(crash_input)}
            crash_log.write(json.dumps(found) + "\n")
            crash_log.flush()

    corpus = out / "corpus"
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-max_len={MAX_INPUT_BYTES}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={TIMEOUT_S}",
        f"-artifact_prefix={out}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(argv, target)
    atheris.Fuzz()


def fuzz(seconds: int, out: Path) -> FuzzTally:
    """Run the fuzzer for ``seconds`` with its corpus and findings in ``out``."""
    write_seeds(out / "corpus")
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-m", "bench.fuzz_decoder", "--child", "--seconds", str(seconds), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
    )
    tally = FuzzTally(seconds=time.monotonic() - started)
    done = _DONE_LINE.search(child.stderr)
    if done:
        tally.executions = int(done.group(1))
    coverage = _COVERAGE.search(child.stderr)
    if coverage:
        tally.edges, tally.corpus = int(coverage.group(1)), int(coverage.group(3))
    if child.returncode != 0 or not done:
        # libFuzzer stopped on something it found itself (a timeout, out of memory, a native crash).
        findings = [
            line for line in child.stderr.splitlines() if "ERROR: libFuzzer" in line or "==ERROR" in line
        ]
        tally.fuzzer_stopped = findings[0] if findings else f"exit {child.returncode}: {child.stderr[-500:]}"
        tally.crashes += 1
    log = out / CRASH_LOG
    if log.exists():
        for line in log.read_text().splitlines():
            tally.crashes += 1
            tally.signatures[json.loads(line)["signature"]] += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300, help="fuzzing time budget")
    parser.add_argument("--out", type=Path, help="keep the corpus and crash inputs here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.out, args.seconds)
        return
    with tempfile.TemporaryDirectory(prefix="dt-fuzz-decoder-") as folder:
        tally = fuzz(args.seconds, args.out or Path(folder))
    rate = tally.executions / max(tally.seconds, 1)
    print(f"{tally.executions} executions in {tally.seconds:.0f} s ({rate:.0f}/s);"
          f" coverage {tally.edges} edges, corpus {tally.corpus} inputs")  # fmt: skip
    print(
        f"crashes: {tally.crashes}"
        + (f" (libFuzzer: {tally.fuzzer_stopped})" if tally.fuzzer_stopped else "")
    )
    for signature, count in tally.signatures.most_common(10):
        print(f"  {count} x {signature}")


if __name__ == "__main__":
    main()
