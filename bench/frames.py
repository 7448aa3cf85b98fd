"""Measure frame encodings on real action frames: bytes per frame and per active hour, CPU, quality.

    .venv/bin/python bench/frames.py --seconds 120
    .venv/bin/python bench/frames.py --frames-dir /tmp/frames --seconds 300   # keep the frames
    .venv/bin/python bench/frames.py --frames-dir /tmp/frames --reuse         # measure them again

Capture: Xvfb (1920x1080) + openbox, the demo's Tk form and xterm, and the scripted session. A
recorder-like grabber hooks input with pynput (X RECORD), decides frames with the recorder's own
``frame_trigger`` and grabs the monitor under the pointer with mss the moment an action starts; a
window-focus change (the recorder's key-frame signal) is noted on the next frame. Raw pixels are
kept (zstd) so every technique sees exactly the same frames.

Measure: each technique encodes the whole sequence in order (stateful ones keep their chain), the
result is resolved back to full images with the dataset's resolver, and compared with the original.
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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zstandard
from PIL import Image

from demotrace.capture import frames as frame_policy
from demotrace.capture import keys as key_names
from demotrace.capture.platform import WindowInfo
from demotrace.framecodec import (
    EncodingSettings,
    FrameEncoder,
    PowerState,
    choose_encoding,
    image_error,
    resolving_loader,
)
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
            state = frame_policy.TriggerState()
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
                    trigger, state = frame_policy.frame_trigger(
                        state, kind, t, x=pointer[0], y=pointer[1], button=message[4]
                    )
                elif kind == "scroll":
                    trigger, state = frame_policy.frame_trigger(state, "scroll", t)
                elif kind in ("key_down", "key_up"):
                    info = key_names.describe_key(key_names.raw_key_of(message[2]))
                    modifiers = key_names.modifiers_held(held, excluding=info.key)
                    held = key_names.press_modifiers(held, info.key, kind == "key_down")
                    if kind == "key_down":
                        is_modifier = info.key in key_names.MODIFIER_OF_KEY
                        trigger, state = frame_policy.frame_trigger(
                            state,
                            "modifier_down" if is_modifier else "key_down",
                            t,
                            hotkey=key_names.is_hotkey(info.key, modifiers),
                        )
                if trigger is None:
                    continue
                monitor = frame_policy.monitor_at(layout.monitors, *pointer)
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
        started = time.process_time()
        encoded = encoder.encode(image, captured.monitor, key=captured.window_changed)
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
    return Result(name, sizes, cpu_ms, psnr, max_error, unresolved)


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the scripted session")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--frames-dir", type=Path, default=None, help="keep the raw frames here")
    parser.add_argument("--reuse", action="store_true", help="measure frames already in --frames-dir")
    parser.add_argument("--all", action="store_true", help="also the slow and the clearly losing techniques")
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
            f" {'PSNR dB':>8} {'max err':>7}"
        )
        print(header)
        print("-" * len(header))
        for name, settings in techniques(args.all):
            result = measure(name, settings, folder, frames, check_quality=True)
            mean = statistics.fmean(result.sizes)
            finite = [value for value in result.psnr if math.isfinite(value)]
            psnr = "exact" if not finite else f"{min(finite):.1f}"
            worst = max(result.max_error) if result.max_error else -1
            print(
                f"{name:<58} {mean:>8.0f} {_percentile([float(s) for s in result.sizes], 0.95):>8.0f}"
                f" {mean * frames_per_hour / 1e6:>7.2f} {statistics.fmean(result.encode_cpu_ms):>7.1f}"
                f" {_percentile(result.encode_cpu_ms, 0.95):>7.1f} {psnr:>8} {worst:>7}"
                + (f"  ({result.unresolved} unresolved!)" if result.unresolved else "")
            )


if __name__ == "__main__":
    main()
