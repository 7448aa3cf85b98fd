"""Measure frame encodings on real action frames: bytes per frame and per active hour, CPU, quality.

    .venv/bin/python bench/frames.py --seconds 120
    .venv/bin/python bench/frames.py --frames-dir /tmp/frames --seconds 300   # keep the frames
    .venv/bin/python bench/frames.py --frames-dir /tmp/frames --reuse         # measure them again
    .venv/bin/python bench/frames.py --frames-dir /tmp/frames --reuse --video # + VFR video (PyAV)

Capture: Xvfb (1920x1080) + openbox, the demo's Tk form and xterm, and the scripted session. A
recorder-like grabber hooks input with pynput (X RECORD), decides frames with the recorder's own
``frame_trigger`` and grabs the monitor under the pointer with mss the moment an action starts; a
window-focus change (the recorder's key-frame signal) is noted on the next frame. Raw pixels are
kept (zstd) so every technique sees exactly the same frames.

Measure: each technique encodes the whole sequence in order (stateful ones keep their chain), the
result is resolved back to full images with the dataset's resolver, and compared with the original.
Random access is the cost of ONE step's image with nothing cached: a fresh resolver rebuilds it from
its key frame (tile deltas), or the video is sought to the key frame before it and decoded forward.

Video (``--video``): the same frames as one variable-frame-rate Matroska stream written with PyAV
(FFmpeg), pts = capture time in ms, key frames forced where the tile deltas put theirs (window switch,
every 30 frames), encoders set to emit each frame's packet at once (no B-frames, no lookahead) because
the recorder must spool a step's image when it happens.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy
import zstandard
from av.video.frame import PictureType
from PIL import Image

from demotrace.capture import keys as key_names
from demotrace.capture import triggers
from demotrace.capture.platform import WindowInfo
from demotrace.frames.encoder import FrameEncoder
from demotrace.frames.pixels import ScreenPixels
from demotrace.frames.resolver import FrameResolver, image_error, resolving_loader
from demotrace.frames.settings import EncodingSettings, PowerState, choose_encoding
from demotrace.model import Frame, Monitor

BUDGET_BYTES_PER_HOUR = 10 * 10**6


@dataclass(frozen=True)
class CapturedFrame:
    index: int
    t: float
    trigger: str
    window_changed: bool
    monitor: Monitor


# -- capture -----------------------------------------------------------------------------------------


def _raw_path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.rgb.zst"


def capture_frames(folder: Path, seconds: float, seed: int) -> tuple[list[CapturedFrame], float, int]:
    """Run the scripted session and keep a raw frame per action start; (frames, active s, actions)."""
    import mss

    from demotrace.capture.platform.x11 import X11Platform
    from demotrace.demo.desktop import VirtualDesktop
    from demotrace.demo.script import run_scripted_session, start_demo_apps

    folder.mkdir(parents=True, exist_ok=True)
    with VirtualDesktop() as desktop:
        apps = start_demo_apps(desktop, folder / "app-state.json")
        os.environ["DISPLAY"] = desktop.display  # pynput connects to $DISPLAY
        from pynput import keyboard, mouse

        platform = X11Platform(desktop.display)
        layout = platform.screen_layout()
        messages: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        captured: list[CapturedFrame] = []
        compressor = zstandard.ZstdCompressor(level=1)

        def grab_loop() -> None:
            screen = mss.MSS(display=desktop.display)
            state = triggers.TriggerState()
            held: frozenset[str] = frozenset()
            pointer = (0, 0)
            window_changed = True
            while (message := messages.get()) is not None:
                kind, t = message[0], message[1]
                trigger: str | None = None
                if kind == "window":
                    window_changed = True
                    continue
                if kind == "move":
                    pointer = message[2], message[3]
                    continue
                if kind in ("button_down", "button_up"):
                    pointer = message[2], message[3]
                    trigger, state = triggers.frame_trigger(
                        state, kind, t, x=pointer[0], y=pointer[1], button=message[4]
                    )
                elif kind == "scroll":
                    trigger, state = triggers.frame_trigger(state, "scroll", t)
                elif kind in ("key_down", "key_up"):
                    info = key_names.describe_key(key_names.raw_key_of(message[2]))
                    modifiers = key_names.modifiers_held(held, excluding=info.key)
                    held = key_names.press_modifiers(held, info.key, kind == "key_down")
                    if kind == "key_down":
                        is_modifier = info.key in key_names.MODIFIER_OF_KEY
                        trigger, state = triggers.frame_trigger(
                            state,
                            "modifier_down" if is_modifier else "key_down",
                            t,
                            hotkey=key_names.is_hotkey(info.key, modifiers),
                        )
                if trigger is None:
                    continue
                monitor = triggers.monitor_at(layout.monitors, *pointer)
                shot = screen.grab(
                    {
                        "left": monitor.left,
                        "top": monitor.top,
                        "width": monitor.width,
                        "height": monitor.height,
                    }
                )
                rgb = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX").tobytes()
                index = len(captured)
                _raw_path(folder, index).write_bytes(compressor.compress(rgb))
                captured.append(CapturedFrame(index, t, trigger, window_changed, monitor))
                window_changed = False
            screen.close()

        def on_window(info: WindowInfo | None) -> None:
            messages.put(("window", time.monotonic()))

        def on_error(failure: BaseException) -> None:
            print(f"focus watch failed: {failure!r}")

        def button_name(button: Any) -> str:
            return str(getattr(button, "name", ""))

        grabber = threading.Thread(target=grab_loop, name="bench-grab")
        grabber.start()
        watch = platform.watch_focus(on_window, on_error)
        listeners: list[Any] = [
            keyboard.Listener(
                on_press=lambda key, injected=False: messages.put(("key_down", time.monotonic(), key)),
                on_release=lambda key, injected=False: messages.put(("key_up", time.monotonic(), key)),
            ),
            mouse.Listener(
                on_move=lambda x, y, injected=False: messages.put(("move", time.monotonic(), x, y)),
                on_click=lambda x, y, button, pressed, injected=False: messages.put(
                    ("button_down" if pressed else "button_up", time.monotonic(), x, y, button_name(button))
                ),
                on_scroll=lambda x, y, dx, dy, injected=False: messages.put(("scroll", time.monotonic())),
            ),
        ]
        for listener in listeners:
            listener.start()
            listener.wait()
        started = time.monotonic()
        injected = run_scripted_session(
            desktop.display, seed=seed, seconds=seconds, app_state_file=folder / "app-state.json"
        )
        active = time.monotonic() - started
        time.sleep(0.5)  # the last events reach the listeners
        for listener in listeners:
            listener.stop()
        # pynput's X RECORD listener only notices stop() on its next event: give it one.
        from demotrace.demo.xdriver import XDriver

        with XDriver(desktop.display) as driver:
            driver.move_to(5, 5)
            driver.press("shift")
        for listener in listeners:
            listener.join(5)
        messages.put(None)
        grabber.join()
        watch.stop()
        platform.close()
        apps.stop()
    (folder / "frames.json").write_text(
        json.dumps(
            {
                "active_seconds": active,
                "actions": len(injected),
                "frames": [
                    {
                        "index": frame.index,
                        "t": frame.t,
                        "trigger": frame.trigger,
                        "window_changed": frame.window_changed,
                        "monitor": [
                            frame.monitor.left,
                            frame.monitor.top,
                            frame.monitor.width,
                            frame.monitor.height,
                        ],
                    }
                    for frame in captured
                ],
            }
        )
    )
    return captured, active, len(injected)


def load_captured(folder: Path) -> tuple[list[CapturedFrame], float, int]:
    index = json.loads((folder / "frames.json").read_text())
    frames = [
        CapturedFrame(
            item["index"], item["t"], item["trigger"], item["window_changed"], Monitor(*item["monitor"])
        )
        for item in index["frames"]
    ]
    return frames, float(index["active_seconds"]), int(index["actions"])


def iter_images(folder: Path, frames: list[CapturedFrame]) -> Iterator[tuple[CapturedFrame, Image.Image]]:
    decompressor = zstandard.ZstdDecompressor()
    for frame in frames:
        raw = decompressor.decompress(_raw_path(folder, frame.index).read_bytes())
        yield frame, Image.frombytes("RGB", (frame.monitor.width, frame.monitor.height), raw)


# -- techniques ---------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    sizes: list[int]
    encode_cpu_ms: list[float]
    psnr: list[float]
    max_error: list[int]
    unresolved: int
    random_cpu_ms: list[float] = field(default_factory=list)  # one image, nothing cached
    random_decoded: list[int] = field(default_factory=list)  # frames decoded to get it
    note: str = ""


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def measure(
    name: str, settings: EncodingSettings, folder: Path, frames: list[CapturedFrame], *, check_quality: bool
) -> Result:
    encoder = FrameEncoder(settings)
    stored: dict[str, Frame] = {}
    originals: list[tuple[str, Image.Image]] = []
    sizes: list[int] = []
    cpu_ms: list[float] = []
    for captured, image in iter_images(folder, frames):
        pixels = ScreenPixels.of_image(image)  # what the recorder hands the encoder: the grab's BGRX bytes
        started = time.process_time()
        encoded = encoder.encode(pixels, captured.monitor, key=captured.window_changed)
        cpu_ms.append((time.process_time() - started) * 1000)
        sizes.append(len(encoded.data))
        stored[encoded.frame_id] = encoded.to_frame(
            session_id="bench", device_id="bench", t=captured.t, wall=0.0
        )
        if check_quality:
            originals.append((encoded.frame_id, image))
    psnr: list[float] = []
    max_error: list[int] = []
    unresolved = 0
    if check_quality:
        load = resolving_loader(stored.get)
        for frame_id, original in originals:
            resolved = load(frame_id)
            if resolved is None:
                unresolved += 1
                continue
            error = image_error(original, Image.open(io.BytesIO(resolved.data)))
            psnr.append(error.psnr)
            max_error.append(error.max_abs)
    random_cpu_ms: list[float] = []
    random_decoded: list[int] = []
    for frame_id in stored:
        resolver = FrameResolver(stored.get, cache_size=settings.key_interval + 1)
        started = time.process_time()
        resolver.image(frame_id)
        random_cpu_ms.append((time.process_time() - started) * 1000)
        random_decoded.append(resolver.decoded)
    return Result(name, sizes, cpu_ms, psnr, max_error, unresolved, random_cpu_ms, random_decoded)


# -- video (PyAV) ------------------------------------------------------------------------------------

VIDEO_TICKS_PER_SECOND = 1000  # Matroska stores ms; action frames are never closer than that matters
VIDEO_ENCODER_GOP = 100_000  # the encoder never picks a key frame by count: ours are forced


@dataclass(frozen=True)
class VideoSettings:
    """One VFR video encoding: an FFmpeg encoder, the pixel format it gets and its options."""

    encoder: str
    pixel_format: str
    options: tuple[tuple[str, str], ...] = ()
    key_interval: int = 30
    key_on_window_change: bool = True


def video_timestamps(times: Sequence[float], ticks_per_second: int) -> list[int]:
    """Presentation times in ticks from the first frame, strictly increasing (encoders refuse repeats)."""
    stamps: list[int] = []
    for t in times:
        tick = round((t - times[0]) * ticks_per_second)
        if stamps and tick <= stamps[-1]:
            tick = stamps[-1] + 1
        stamps.append(tick)
    return stamps


def video_key_frames(window_changed: Sequence[bool], interval: int, *, on_window_change: bool) -> list[bool]:
    """Frames to force as key frames, as the tile deltas choose theirs: the first, a window switch
    (when ``on_window_change``) and the frame after ``interval`` frames of a chain."""
    if interval < 1:
        raise ValueError(f"interval must be at least 1, not {interval}")
    keys: list[bool] = []
    chain_length = 0
    for index, changed in enumerate(window_changed):
        key = index == 0 or chain_length >= interval or (on_window_change and changed)
        chain_length = 1 if key else chain_length + 1
        keys.append(key)
    return keys


def measure_video(name: str, settings: VideoSettings, folder: Path, frames: list[CapturedFrame]) -> Result:
    """Encode the frames as one VFR video, decode it whole (exactness) and one frame at a time (random
    access)."""
    sizes = {(frame.monitor.width, frame.monitor.height) for frame in frames}
    if len(sizes) != 1:
        raise ValueError(f"one video stream needs one frame size, these frames have {sorted(sizes)}")
    ((width, height),) = sizes
    time_base = Fraction(1, VIDEO_TICKS_PER_SECOND)
    stamps = video_timestamps([frame.t for frame in frames], VIDEO_TICKS_PER_SECOND)
    keys = video_key_frames(
        [frame.window_changed for frame in frames],
        settings.key_interval,
        on_window_change=settings.key_on_window_change,
    )
    buffer = io.BytesIO()
    packet_sizes: list[int] = []
    key_packets = 0  # as the encoder made them (it may add its own to the forced ones)
    cpu_ms: list[float] = []
    loading_cpu = 0.0
    lag = 0  # most frames handed to the encoder whose packet had not come back yet
    loop_started = time.process_time()
    with av.open(buffer, "w", format="matroska") as output:
        stream = output.add_stream(settings.encoder, options=dict(settings.options))
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"{settings.encoder} is not a video encoder")
        stream.width, stream.height, stream.pix_fmt = width, height, settings.pixel_format
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = VIDEO_ENCODER_GOP
        images = iter_images(folder, frames)
        for index, (stamp, key) in enumerate(zip(stamps, keys, strict=True)):
            loading_started = time.thread_time()
            _, image = next(images)
            loading_cpu += time.thread_time() - loading_started
            started = time.process_time()
            picture = av.VideoFrame.from_ndarray(numpy.asarray(image), format="rgb24")
            picture = picture.reformat(format=settings.pixel_format)
            picture.pts, picture.time_base = stamp, time_base
            picture.pict_type = PictureType.I if key else PictureType.NONE
            packets = stream.encode(picture)
            for packet in packets:
                output.mux(packet)
            cpu_ms.append((time.process_time() - started) * 1000)
            packet_sizes += [packet.size for packet in packets]
            key_packets += sum(packet.is_keyframe for packet in packets)
            lag = max(lag, index + 1 - len(packet_sizes))
        started = time.process_time()
        for packet in stream.encode(None):
            output.mux(packet)
            packet_sizes.append(packet.size)
            key_packets += packet.is_keyframe
    cpu_ms[-1] += (time.process_time() - started) * 1000
    # Encoders that work in their own threads (SVT-AV1) spend CPU outside the per-frame windows:
    # spread what the windows missed evenly so the mean is the whole cost.
    unattributed_ms = (time.process_time() - loop_started - loading_cpu) * 1000 - sum(cpu_ms)
    cpu_ms = [value + max(0.0, unattributed_ms) / len(cpu_ms) for value in cpu_ms]
    data = buffer.getvalue()
    # Container bytes (header, cues, block headers) shared out evenly over the frames.
    overhead = (len(data) - sum(packet_sizes)) / len(packet_sizes)
    frame_sizes = [round(size + overhead) for size in packet_sizes]

    psnr: list[float] = []
    max_error: list[int] = []
    with av.open(io.BytesIO(data), "r") as source:
        decoded = source.decode(source.streams.video[0])
        for (_, original), picture in zip(iter_images(folder, frames), decoded, strict=False):
            error = image_error(original, Image.fromarray(picture.to_ndarray(format="rgb24")))
            psnr.append(error.psnr)
            max_error.append(error.max_abs)
    unresolved = len(frames) - len(psnr)

    random_cpu_ms: list[float] = []
    random_decoded: list[int] = []
    with av.open(io.BytesIO(data), "r") as source:
        video = source.streams.video[0]
        # One thread: a frame-threaded decoder runs ahead past the frame wanted; a dataset loader
        # parallelises across samples instead.
        video.codec_context.thread_count = 1
        for stamp in stamps:
            started = time.process_time()
            source.seek(stamp, stream=video, backward=True)
            count = 0
            reached: int | None = None
            for picture in source.decode(video):
                count, reached = count + 1, picture.pts
                if reached is not None and reached >= stamp:
                    picture.to_ndarray(format="rgb24")
                    break
            if reached != stamp:
                raise RuntimeError(f"{name}: seeking to {stamp} ms decoded up to {reached} instead")
            random_cpu_ms.append((time.process_time() - started) * 1000)
            random_decoded.append(count)
    return Result(
        name,
        frame_sizes,
        cpu_ms,
        psnr,
        max_error,
        unresolved,
        random_cpu_ms,
        random_decoded,
        note=f"{key_packets} keys, lag {lag}",
    )


def techniques(full: bool) -> list[tuple[str, EncodingSettings]]:
    """(name, settings) for every candidate; ``full`` adds the slow and the clearly losing ones."""
    ac = choose_encoding(PowerState(on_battery=False))
    battery = choose_encoding(PowerState(on_battery=True))
    # Pure full-frame techniques: no lossy fallback (a weak lossless codec would trigger it on text).
    full_frame = replace(ac, delta=False, dedup=False, lossy_above_bytes_per_pixel=None)
    rows: list[tuple[str, EncodingSettings]] = [
        (
            "full PNG (level 6) [old recorder, flat screens]",
            replace(full_frame, key_codec="png", png_level=6),
        ),
        (
            "full WebP lossless m1 effort 0",
            replace(full_frame, key_codec="webp-lossless", method=1, lossless_effort=0),
        ),
        ("full WebP lossless m4", replace(full_frame, key_codec="webp-lossless", method=4)),
        (
            "full WebP q75 m2 [old recorder, busy screens]",
            replace(full_frame, key_codec="webp", quality=75, method=2),
        ),
        (
            "full + dedup, WebP lossless m4",
            replace(full_frame, key_codec="webp-lossless", method=4, dedup=True),
        ),
        ("delta 64px PNG tiles, key PNG", replace(ac, tile_size=64, key_codec="png", tile_codec="png")),
        (
            "delta 32px WebP-ll tiles, key WebP-ll",
            replace(ac, tile_size=32, key_codec="webp-lossless", tile_codec="webp-lossless"),
        ),
        (
            "delta 64px WebP-ll tiles, key WebP-ll",
            replace(ac, tile_size=64, key_codec="webp-lossless", tile_codec="webp-lossless"),
        ),
        (
            "delta 32px WebP q75 tiles, key WebP q75",
            replace(ac, tile_size=32, key_codec="webp", tile_codec="webp", quality=75),
        ),
        ("delta vs key (star), 16px WebP-ll", replace(ac, reference="key")),
        (f"[AC default] {ac.describe()}", ac),
        (f"[battery default] {battery.describe()}", battery),
    ]
    if full:
        rows += [
            ("full PNG (level 1)", replace(full_frame, key_codec="png", png_level=1)),
            ("full WebP lossless m0", replace(full_frame, key_codec="webp-lossless", method=0)),
            ("full WebP lossless m6", replace(full_frame, key_codec="webp-lossless", method=6)),
            ("full WebP q60 m4", replace(full_frame, key_codec="webp", quality=60, method=4)),
            ("full WebP q80 m4", replace(full_frame, key_codec="webp", quality=80, method=4)),
            ("delta 32px WebP-ll tiles, m4", replace(ac, tile_size=32)),
            ("delta 16px, key every 10", replace(ac, key_interval=10)),
            ("delta 16px, key every 100", replace(ac, key_interval=100)),
            ("delta 16px, no key on window change", replace(ac, key_on_window_change=False)),
        ]
    return rows


# Each frame's packet must come out of the encoder at once: no B-frames, no lookahead.
X264_LOW_DELAY = (("tune", "zerolatency"),)
VP9_LOW_DELAY = (("lag-in-frames", "0"), ("row-mt", "1"))
SVT_AV1_LOW_DELAY = (("svtav1-params", "pred-struct=1"),)


def video_techniques(full: bool) -> list[tuple[str, VideoSettings]]:
    """(name, settings) of the VFR video candidates; ``full`` adds the slow and the clearly losing ones."""
    rows = [
        (
            "VFR H.264 RGB lossless (x264rgb qp0 veryfast)",
            VideoSettings("libx264rgb", "rgb24", (("qp", "0"), ("preset", "veryfast"), *X264_LOW_DELAY)),
        ),
        (
            "VFR H.264 4:4:4 qp0 (x264 veryfast)",
            VideoSettings("libx264", "yuv444p", (("qp", "0"), ("preset", "veryfast"), *X264_LOW_DELAY)),
        ),
        (
            "VFR H.264 4:2:0 crf18 (x264 veryfast)",
            VideoSettings("libx264", "yuv420p", (("crf", "18"), ("preset", "veryfast"), *X264_LOW_DELAY)),
        ),
        (
            "VFR VP9 RGB lossless (vpx realtime cpu8)",
            VideoSettings(
                "libvpx-vp9",
                "gbrp",
                (("lossless", "1"), ("deadline", "realtime"), ("cpu-used", "8"), *VP9_LOW_DELAY),
            ),
        ),
        (
            "VFR AV1 4:2:0 crf30 (SVT-AV1 preset 10)",
            VideoSettings("libsvtav1", "yuv420p", (("crf", "30"), ("preset", "10"), *SVT_AV1_LOW_DELAY)),
        ),
    ]
    if full:
        rows += [
            (
                "VFR H.264 RGB lossless (x264rgb qp0 medium)",
                VideoSettings("libx264rgb", "rgb24", (("qp", "0"), ("preset", "medium"), *X264_LOW_DELAY)),
            ),
            (
                "VFR H.264 RGB lossless veryfast, key every 30 only",
                VideoSettings(
                    "libx264rgb",
                    "rgb24",
                    (("qp", "0"), ("preset", "veryfast"), *X264_LOW_DELAY),
                    key_on_window_change=False,
                ),
            ),
            (
                "VFR H.264 RGB lossless veryfast, key every 300 only",
                VideoSettings(
                    "libx264rgb",
                    "rgb24",
                    (("qp", "0"), ("preset", "veryfast"), *X264_LOW_DELAY),
                    key_interval=300,
                    key_on_window_change=False,
                ),
            ),
            (
                "VFR H.264 4:2:0 crf23 (x264 veryfast)",
                VideoSettings("libx264", "yuv420p", (("crf", "23"), ("preset", "veryfast"), *X264_LOW_DELAY)),
            ),
            (
                "VFR H.264 4:4:4 crf18 (x264 veryfast)",
                VideoSettings("libx264", "yuv444p", (("crf", "18"), ("preset", "veryfast"), *X264_LOW_DELAY)),
            ),
            (
                "VFR AV1 4:2:0 crf20 (SVT-AV1 preset 8)",
                VideoSettings("libsvtav1", "yuv420p", (("crf", "20"), ("preset", "8"), *SVT_AV1_LOW_DELAY)),
            ),
            (
                "VFR VP9 RGB lossless (vpx good cpu4)",
                VideoSettings(
                    "libvpx-vp9",
                    "gbrp",
                    (("lossless", "1"), ("deadline", "good"), ("cpu-used", "4"), *VP9_LOW_DELAY),
                ),
            ),
        ]
    return rows


def print_row(result: Result, frames_per_hour: float) -> None:
    mean = statistics.fmean(result.sizes)
    finite = [value for value in result.psnr if math.isfinite(value)]
    psnr = "exact" if not finite else f"{min(finite):.1f}"
    worst = max(result.max_error) if result.max_error else -1
    print(
        f"{result.name:<58} {mean:>8.0f} {_percentile([float(s) for s in result.sizes], 0.95):>8.0f}"
        f" {mean * frames_per_hour / 1e6:>7.2f} {statistics.fmean(result.encode_cpu_ms):>7.1f}"
        f" {_percentile(result.encode_cpu_ms, 0.95):>7.1f} {psnr:>8} {worst:>7}"
        f" {statistics.fmean(result.random_cpu_ms):>7.1f} {statistics.fmean(result.random_decoded):>5.1f}"
        + (f"  {result.note}" if result.note else "")
        + (f"  ({result.unresolved} unresolved!)" if result.unresolved else "")
    )


def video_verdict(deltas: Result, videos: list[Result]) -> str:
    """One line: how the best pixel-exact and the best lossy video compare with the tile deltas."""

    def ratios(video: Result) -> str:
        return (
            f"{statistics.fmean(video.sizes) / statistics.fmean(deltas.sizes):.1f}x the bytes,"
            f" {statistics.fmean(video.encode_cpu_ms) / statistics.fmean(deltas.encode_cpu_ms):.1f}x the"
            " encode CPU,"
            f" {statistics.fmean(video.random_cpu_ms) / statistics.fmean(deltas.random_cpu_ms):.1f}x"
            " the CPU per random image"
        )

    exact = [video for video in videos if video.max_error and max(video.max_error) == 0]
    lossy = [video for video in videos if video not in exact]
    parts = []
    if exact:
        best = min(exact, key=lambda video: statistics.fmean(video.sizes))
        parts.append(f"smallest pixel-exact video ({best.name}): {ratios(best)}")
    if lossy:
        best = min(lossy, key=lambda video: statistics.fmean(video.sizes))
        parts.append(f"smallest lossy video ({best.name}, max error {max(best.max_error)}): {ratios(best)}")
    return "verdict vs " + deltas.name + ": " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the scripted session")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--frames-dir", type=Path, default=None, help="keep the raw frames here")
    parser.add_argument("--reuse", action="store_true", help="measure frames already in --frames-dir")
    parser.add_argument("--all", action="store_true", help="also the slow and the clearly losing techniques")
    parser.add_argument("--video", action="store_true", help="also VFR video of the action frames (PyAV)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="demotrace-frames-") as tmp:
        folder = args.frames_dir or Path(tmp)
        if args.reuse:
            frames, active, actions = load_captured(folder)
        else:
            frames, active, actions = capture_frames(folder, args.seconds, args.seed)
        frames_per_hour = len(frames) * 3600 / active
        keys = sum(frame.window_changed for frame in frames)
        print(
            f"scripted session: {active:.0f} s, {actions} actions, {len(frames)} frames "
            f"({frames_per_hour:.0f} per active hour), {keys} window changes, 1920x1080"
        )
        print(
            f"budget: {BUDGET_BYTES_PER_HOUR / 1e6:.0f} MB per active hour → "
            f"{BUDGET_BYTES_PER_HOUR / frames_per_hour:.0f} B per frame at this rate"
        )
        header = (
            f"{'technique':<58} {'mean B':>8} {'p95 B':>8} {'MB/h':>7} {'enc ms':>7} {'p95 ms':>7}"
            f" {'PSNR dB':>8} {'max err':>7} {'rand ms':>7} {'chain':>5}"
        )
        print(header)
        print("-" * len(header))
        ac_default: Result | None = None
        for name, settings in techniques(args.all):
            result = measure(name, settings, folder, frames, check_quality=True)
            print_row(result, frames_per_hour)
            if name.startswith("[AC default]"):
                ac_default = result
        if args.video:
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration banner otherwise
            av.logging.set_level(av.logging.ERROR)
            videos = []
            for name, video_settings in video_techniques(args.all):
                result = measure_video(name, video_settings, folder, frames)
                print_row(result, frames_per_hour)
                videos.append(result)
            if ac_default is not None:
                print(video_verdict(ac_default, videos))
        print(
            "PSNR: worst frame; max err: largest channel error of any pixel; rand ms: CPU to get ONE"
            " image with nothing cached; chain: frames decoded for it; lag: frames held in the encoder"
        )


if __name__ == "__main__":
    main()
