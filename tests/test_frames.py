"""Frame encoding: key frames, tile deltas, dedup, and resolution back to full images.

Pure codec behaviour is checked on screens drawn with Pillow (text, UI boxes); exactness on real
screenshots of Xvfb with xterms typed into through XTEST; the recorder's wiring with the real recorder.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
from PIL import Image, ImageDraw, ImageFilter

from demotrace.capture.grab import FrameBuffers, grab_pixels
from demotrace.demo.desktop import VirtualDesktop
from demotrace.device.spool import Spool
from demotrace.frames.delta import FrameCodecError, changed_tiles, parse_delta
from demotrace.frames.encoder import FrameEncoder, encode_held
from demotrace.frames.images import has_many_colours, screen_png
from demotrace.frames.pixels import ScreenPixels
from demotrace.frames.resolver import FrameResolver, image_error, resolving_loader
from demotrace.frames.settings import EncodingSettings, PowerState, choose_encoding
from demotrace.model import Frame, FrameTaken, Monitor, Window, decode_record
from demotrace.policy import DEFAULT_LOCAL_POLICY, CaptureGate
from demotrace.protocol import DELTA_MEDIA_TYPE
from tests.recorder_thread import recording

SCREEN = Monitor(0, 0, 1280, 720)
FILES = [
    f"{name}.txt" for name in ("notes", "budget", "plan", "minutes", "todo", "ideas", "draft", "log")
] * 4


def screen(
    lines: list[str], *, highlight: int | None = None, size: tuple[int, int] = (1280, 720)
) -> Image.Image:
    """A text-editor-like screen: a title bar, a file list, lines of text, optionally one highlighted line."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0], 24), fill=(40, 60, 120))
    draw.text((8, 6), "notes.txt - Editor", fill="white")
    draw.rectangle((0, 25, 180, size[1]), fill=(235, 235, 235))
    for row, name in enumerate(FILES):
        draw.text((10, 34 + row * 18), name, fill=(60, 60, 60))
    for row, line in enumerate(lines):
        y = 34 + row * 16
        if row == highlight:
            draw.rectangle((190, y - 2, size[0], y + 13), fill=(200, 220, 255))
        draw.text((196, y), line, fill=(20, 20, 20))
    return image


def typing_session(steps: int) -> list[Image.Image]:
    """Screens of someone typing a growing paragraph, one screen per action."""
    text = "The quarterly report is due on Friday; send the draft to Ana first. " * 3
    lines: list[str] = []
    shots = []
    for step in range(steps):
        typed = text[: 12 * (step + 1)]
        lines = [typed[i : i + 60] for i in range(0, len(typed), 60)]
        shots.append(screen(lines, highlight=step % 5))
    return shots


def store_of(frames: list[Frame]) -> dict[str, Frame]:
    return {frame.frame_id: frame for frame in frames}


def encode_all(
    images: list[Image.Image], settings: EncodingSettings, keys: set[int] | None = None
) -> list[Frame]:
    encoder = FrameEncoder(settings)
    return [
        encoder.encode(image, SCREEN, key=index in (keys or set())).to_frame(
            session_id="s", device_id="d", t=float(index), wall=float(index)
        )
        for index, image in enumerate(images)
    ]


def pixels_of(frame: Frame) -> Image.Image:
    assert frame.media_type in ("image/png", "image/webp")
    with Image.open(io.BytesIO(frame.data)) as opened:
        return opened.convert("RGB")


def kinds(frames: list[Frame]) -> str:
    return "".join("D" if frame.media_type == DELTA_MEDIA_TYPE else "K" for frame in frames)


# -- the codec on drawn screens ----------------------------------------------------------------------


def test_lossless_deltas_rebuild_every_frame_pixel_for_pixel_and_are_small() -> None:
    images = typing_session(12)
    frames = encode_all(images, EncodingSettings())
    assert kinds(frames) == "K" + "D" * 11
    resolve = resolving_loader(store_of(frames).get)
    for frame, original in zip(frames, images, strict=True):
        resolved = resolve(frame.frame_id)
        assert resolved is not None and resolved.base_frame_id is None
        assert (resolved.frame_id, resolved.t, resolved.width, resolved.height) == (
            frame.frame_id,
            frame.t,
            1280,
            720,
        )
        assert pixels_of(resolved).tobytes() == original.tobytes()
    whole = encode_all(images, EncodingSettings(delta=False))
    assert sum(len(frame.data) for frame in frames) < sum(len(frame.data) for frame in whole) / 2


def test_png_key_frames_and_png_tiles_are_exact_too() -> None:
    images = typing_session(4)
    frames = encode_all(images, EncodingSettings(key_codec="png", tile_codec="png", tile_size=64))
    assert frames[0].media_type == "image/png"
    resolve = resolving_loader(store_of(frames).get, output="webp-lossless")
    for frame, original in zip(frames, images, strict=True):
        resolved = resolve(frame.frame_id)
        assert resolved is not None
        assert pixels_of(resolved).tobytes() == original.tobytes()


def test_a_png_key_frame_from_screen_pixels_is_pillows_png_of_the_same_screen() -> None:
    image = typing_session(3)[-1]
    stored = image.tobytes("raw", "BGRX")
    pillows = io.BytesIO()
    image.save(pillows, "PNG", compress_level=6)
    for buffer in (stored, bytearray(stored), memoryview(bytearray(stored))):
        data = screen_png(ScreenPixels(buffer, *image.size), 6)
        decoded = Image.open(io.BytesIO(data))
        assert (decoded.format, decoded.mode, decoded.size) == ("PNG", "RGB", image.size)
        assert decoded.tobytes() == image.tobytes()
        # The same compressor with the same filters: only the IDAT chunking differs.
        assert abs(len(data) - len(pillows.getvalue())) < 64


def test_only_images_with_photo_like_colour_counts_are_tried_lossy() -> None:
    text = typing_session(8)[-1]
    assert not has_many_colours(text)
    assert not has_many_colours(ScreenPixels.of_image(text))
    assert not has_many_colours(text.crop((190, 30, 254, 94)))  # a small tile of dense text
    picture = photo()
    assert has_many_colours(picture)
    assert has_many_colours(picture.crop((0, 0, 64, 64)))  # a small tile of it
    with_picture = text.copy()
    with_picture.paste(picture.crop((0, 0, 256, 192)), (320, 192))
    assert has_many_colours(ScreenPixels.of_image(with_picture))


def test_lossy_tiles_keep_text_within_the_stated_error() -> None:
    images = typing_session(8)
    frames = encode_all(images, EncodingSettings(key_codec="webp", tile_codec="webp", quality=75))
    resolve = resolving_loader(store_of(frames).get)
    for frame, original in zip(frames, images, strict=True):
        resolved = resolve(frame.frame_id)
        assert resolved is not None
        error = image_error(original, pixels_of(resolved))
        # Lossy WebP q75 on text: ~30+ dB; error does not build up along the chain (tiles are replaced).
        assert error.max_abs > 0 and error.psnr >= 28, error


def test_a_window_switch_starts_a_key_frame() -> None:
    images = typing_session(6)
    frames = encode_all(images, EncodingSettings(), keys={3})
    assert kinds(frames) == "KDDKDD"
    assert frames[4].base_frame_id == frames[3].frame_id
    assert frames[1].base_frame_id == frames[0].frame_id


def test_force_key_makes_a_key_frame_whatever_the_settings_say_about_window_switches() -> None:
    images = typing_session(4)
    encoder = FrameEncoder(replace(EncodingSettings(), key_on_window_change=False))
    first = encoder.encode(images[0], SCREEN, key=True)
    switched = encoder.encode(images[1], SCREEN, key=True)  # a switch, but these settings keep deltas
    forced = encoder.encode(images[2], SCREEN, key=False, force_key=True)  # e.g. a frame held for a scrub
    after = encoder.encode(images[3], SCREEN, key=False)
    assert [first.is_key, switched.is_key, forced.is_key, after.is_key] == [True, False, True, False]
    assert after.base_frame_id == forced.frame_id


def test_chains_are_bounded_so_a_lost_frame_breaks_little() -> None:
    images = typing_session(7)
    frames = encode_all(images, EncodingSettings(key_interval=3))
    assert kinds(frames) == "KDDKDDK"
    # Lose frame 1: frames 1 and 2 (its chain) are gone, never shown wrong; the next chain is whole.
    store = store_of(frames)
    del store[frames[1].frame_id]
    resolve = resolving_loader(store.get)
    results = [resolve(frame.frame_id) for frame in frames]
    assert [result is not None for result in results] == [True, False, False, True, True, True, True]
    assert pixels_of(results[5]).tobytes() == images[5].tobytes()  # type: ignore[arg-type]


def test_delta_against_the_key_frame_needs_only_the_key_frame() -> None:
    images = typing_session(5)
    frames = encode_all(images, EncodingSettings(reference="key"))
    assert all(frame.base_frame_id == frames[0].frame_id for frame in frames[1:])
    store = store_of(frames)
    del store[frames[2].frame_id]
    resolved = resolving_loader(store.get)(frames[4].frame_id)
    assert resolved is not None and pixels_of(resolved).tobytes() == images[4].tobytes()


def test_an_identical_frame_is_a_tiny_reference_to_the_previous_one() -> None:
    image = typing_session(1)[0]
    for settings in (EncodingSettings(), EncodingSettings(delta=False, dedup=True)):
        frames = encode_all([image, image.copy(), image.copy()], settings)
        assert kinds(frames) == "KDD"
        assert all(len(frame.data) < 100 for frame in frames[1:])
        assert parse_delta(frames[2].data).tiles == []
        resolved = resolving_loader(store_of(frames).get)(frames[2].frame_id)
        assert resolved is not None and pixels_of(resolved).tobytes() == image.tobytes()


def test_full_frames_without_dedup_are_all_self_contained() -> None:
    image = typing_session(1)[0]
    frames = encode_all([image, image, image], EncodingSettings(delta=False, dedup=False))
    assert kinds(frames) == "KKK"


def test_a_screen_that_changes_almost_everywhere_is_sent_as_a_key_frame() -> None:
    first = typing_session(1)[0]
    inverted = Image.eval(first, lambda value: 255 - value)
    frames = encode_all([first, inverted], EncodingSettings())
    assert kinds(frames) == "KK"


def test_each_monitor_has_its_own_chain() -> None:
    left, right = Monitor(0, 0, 1280, 720), Monitor(1280, 0, 1280, 720)
    images = typing_session(4)
    encoder = FrameEncoder(EncodingSettings())
    encoded = [
        encoder.encode(images[0], left, key=False),
        encoder.encode(images[1], right, key=False),
        encoder.encode(images[2], left, key=False),
        encoder.encode(images[3], right, key=False),
    ]
    assert [frame.is_key for frame in encoded] == [True, True, False, False]
    assert encoded[2].base_frame_id == encoded[0].frame_id
    assert encoded[3].base_frame_id == encoded[1].frame_id


def test_a_size_or_settings_change_starts_a_new_chain() -> None:
    encoder = FrameEncoder(EncodingSettings())
    small = screen(["hello"], size=(320, 200))
    assert encoder.encode(typing_session(1)[0], SCREEN, key=False).is_key
    assert encoder.encode(small, SCREEN, key=False).is_key  # the monitor changed resolution
    assert not encoder.encode(small, SCREEN, key=False).is_key
    encoder.settings = choose_encoding(PowerState(on_battery=True))
    assert encoder.encode(small, SCREEN, key=False).is_key
    encoder.reset()
    assert encoder.encode(small, SCREEN, key=False).is_key


def photo(size: tuple[int, int] = (640, 400)) -> Image.Image:
    """Smooth, many-coloured content, like a photo or a video frame."""
    fractal = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 100)
    clouds = Image.effect_noise(size, 40).filter(ImageFilter.GaussianBlur(3))
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (fractal, clouds, gradient))


def test_photo_like_content_goes_lossy_and_text_stays_exact() -> None:
    picture = photo()
    frames = encode_all([picture], EncodingSettings())
    lossless = encode_all([picture], EncodingSettings(lossy_above_bytes_per_pixel=None))
    assert len(frames[0].data) * 3 <= len(lossless[0].data)
    assert image_error(picture, pixels_of(frames[0])).psnr > 30
    # A screen with a picture pasted in: the picture's tiles go lossy, the text around it stays exact.
    text = typing_session(1)[0]
    with_picture = text.copy()
    with_picture.paste(picture.crop((0, 0, 256, 192)), (320, 192))
    frames = encode_all([text, with_picture], EncodingSettings(tile_size=64))
    assert kinds(frames) == "KD"
    rebuilt = resolving_loader(store_of(frames).get)(frames[1].frame_id)
    assert rebuilt is not None
    rebuilt_pixels = pixels_of(rebuilt)
    assert rebuilt_pixels.crop((0, 0, 320, 400)).tobytes() == text.crop((0, 0, 320, 400)).tobytes()
    assert image_error(with_picture, rebuilt_pixels).psnr > 30


def test_the_resolver_decodes_each_frame_of_a_chain_once() -> None:
    images = typing_session(10)
    frames = encode_all(images, EncodingSettings())
    resolver = FrameResolver(store_of(frames).get, cache_size=4)
    for frame in frames:
        assert resolver.resolve(frame.frame_id) is not None
    assert resolver.decoded == 10
    assert resolver.resolve(frames[-1].frame_id) is not None
    assert resolver.decoded == 10  # cached
    # A cold cache rebuilds the chain from its key frame (nine links back), once.
    cold = FrameResolver(store_of(frames).get, cache_size=4)
    resolved = cold.resolve(frames[-1].frame_id)
    assert resolved is not None and pixels_of(resolved).tobytes() == images[-1].tobytes()
    assert cold.decoded == 10
    # The chain's screen was updated in place: going back rebuilds from the key frame (nine frames).
    assert cold.resolve(frames[-2].frame_id) is not None
    assert cold.decoded == 19
    # A key frame is a whole image already: it comes back as stored, decoded by no one.
    fresh = FrameResolver(store_of(frames).get, cache_size=4)
    assert fresh.resolve(frames[0].frame_id) == frames[0] and fresh.decoded == 0


def test_corrupt_or_mismatched_deltas_resolve_to_none_never_to_a_wrong_image() -> None:
    images = typing_session(3)
    frames = encode_all(images, EncodingSettings())
    store = store_of(frames)
    store[frames[1].frame_id] = msgspec.structs.replace(frames[1], data=b"garbage")
    resolve = resolving_loader(store.get)
    assert resolve(frames[1].frame_id) is None
    assert resolve(frames[2].frame_id) is None
    assert resolve(frames[0].frame_id) is not None
    # A delta whose base has another size.
    other = encode_all([screen(["x"], size=(320, 200))], EncodingSettings())[0]
    store[frames[0].frame_id] = msgspec.structs.replace(other, frame_id=frames[0].frame_id)
    assert resolving_loader(store.get)(frames[1].frame_id) is None
    # A chain that loops.
    looped = msgspec.structs.replace(frames[1], base_frame_id=frames[1].frame_id)
    assert resolving_loader({looped.frame_id: looped}.get)(looped.frame_id) is None
    assert resolving_loader(store.get)("no-such-frame") is None


def test_parse_delta_says_what_is_wrong() -> None:
    with pytest.raises(FrameCodecError, match="shorter than its header"):
        parse_delta(b"DT")
    with pytest.raises(FrameCodecError, match="not a demotrace delta"):
        parse_delta(b"PNG!" + bytes(20))


def test_tile_detection_is_the_same_with_and_without_numpy() -> None:
    # Odd sizes: edge tiles stick out, rows are not multiples of 8 bytes.
    for size, tile in [((640, 400), 32), ((1001, 37), 16), ((97, 203), 64)]:
        before = Image.effect_noise(size, 30).convert("RGB")
        after = before.copy()
        for x, y in [(0, 0), (size[0] - 1, size[1] - 1), (size[0] // 2, size[1] // 3)]:
            red, green, blue = after.getpixel((x, y))  # type: ignore[misc]
            after.putpixel((x, y), (red, green, (blue + 1) % 256))
        found = changed_tiles(before, after, tile)
        assert found == changed_tiles(before, after, tile, use_numpy=False)
        columns = -(-size[0] // tile)
        expected = sorted(
            {
                (y // tile) * columns + x // tile
                for x, y in [(0, 0), (size[0] - 1, size[1] - 1), (size[0] // 2, size[1] // 3)]
            }
        )
        assert found == expected
        assert changed_tiles(before, before.copy(), tile) == []


def test_battery_power_chooses_cheaper_encoding() -> None:
    mains = choose_encoding(PowerState(on_battery=False))
    battery = choose_encoding(PowerState(on_battery=True, battery_percent=80))
    low = choose_encoding(PowerState(on_battery=True, battery_percent=10))
    assert mains.lossless and battery.lossless and low.lossless
    assert battery.method < mains.method and battery.lossless_effort < mains.lossless_effort
    assert low.key_interval > battery.key_interval


def test_bad_settings_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tile_size"):
        EncodingSettings(tile_size=30)
    with pytest.raises(ValueError, match="key_interval"):
        EncodingSettings(key_interval=0)


def test_frames_spooled_before_deltas_existed_still_decode() -> None:
    old = {
        "type": "frame_image",
        "frame_id": "f1",
        "session_id": "s",
        "device_id": "d",
        "t": 1.0,
        "wall": 2.0,
        "left": 0,
        "top": 0,
        "width": 1,
        "height": 1,
        "media_type": "image/png",
        "data": b"x",
    }
    record = decode_record(msgspec.msgpack.encode(old))
    assert isinstance(record, Frame) and record.base_frame_id is None


# -- real screens ------------------------------------------------------------------------------------


def xdotool(desktop: VirtualDesktop, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env=desktop.env(), check=True, capture_output=True, text=True)
    return done.stdout.strip()


@contextmanager
def xterm(desktop: VirtualDesktop, title: str, geometry: str) -> Iterator[int]:
    process = desktop.spawn(["xterm", "-title", title, "-geometry", geometry])
    try:
        yield int(xdotool(desktop, "search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[0])
    finally:
        process.terminate()
        process.wait(timeout=5)


@pytest.mark.x11
def test_real_screens_round_trip_exactly_through_the_spool(desktop: VirtualDesktop, tmp_path: Path) -> None:
    import mss

    monitor = Monitor(0, 0, desktop.width, desktop.height)
    spool = Spool(tmp_path / "spool", os.urandom(32))
    encoder = FrameEncoder(choose_encoding(PowerState()))
    originals: dict[str, Image.Image] = {}
    sizes: list[int] = []
    buffers = FrameBuffers()  # reused as in the recorder, while the encoder keeps each delta's base
    with (
        xterm(desktop, "demotrace-codec", "100x30+40+40") as window,
        mss.MSS(display=desktop.display) as grab,
    ):
        xdotool(desktop, "windowactivate", "--sync", str(window))
        for word in ["ls", " -la", " /tmp", "\n", "echo the quick brown fox", "\n", "", "clear\n"]:
            if word:
                xdotool(desktop, "type", "--delay", "5", word)
            time.sleep(0.3)  # let xterm draw
            pixels = grab_pixels(grab, monitor, buffers)
            image = pixels.image()
            encoded = encoder.encode(pixels, monitor, key=False)
            spool.append([encoded.to_frame(session_id="s", device_id="d", t=0.0, wall=0.0)])
            originals[encoded.frame_id] = image
            sizes.append(len(encoded.data))
    resolve = resolving_loader(spool.load_frame)
    for frame_id, original in originals.items():
        resolved = resolve(frame_id)
        assert resolved is not None
        assert pixels_of(resolved).tobytes() == original.tobytes()
    # Typing a few characters costs a small fraction of a whole screen; a repeated screen almost nothing.
    assert max(sizes[1:3]) < sizes[0] / 3
    assert sizes[6] < 100
    spool.close()


@pytest.mark.x11
def test_the_recorder_spools_one_key_frame_then_deltas_across_window_switches(
    desktop: VirtualDesktop, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool", os.urandom(32))
    with (
        xterm(desktop, "demotrace-left", "60x20+50+50") as left,
        xterm(desktop, "demotrace-right", "60x20+900+500"),
    ):
        xdotool(desktop, "windowactivate", "--sync", str(left))
        with recording(spool, desktop.display):
            xdotool(desktop, "type", "--delay", "20", "abc")  # frame 1: a delta (same window as at start)
            time.sleep(1.3)
            xdotool(desktop, "mousemove", "1100", "650", "click", "1")  # focus moves to the right xterm
            time.sleep(0.8)
            xdotool(desktop, "type", "--delay", "20", "xyz")  # the first frame in the new window: a delta too
            time.sleep(1.3)
            xdotool(desktop, "type", "--delay", "20", "uvw")  # same window again: a delta
            time.sleep(0.8)
    events = [event for batch in spool.batches() for event in batch.events]
    taken = [event for event in events if isinstance(event, FrameTaken)]
    assert [frame.trigger for frame in taken] == ["start", "key", "click", "key", "key"]
    assert any(isinstance(event, Window) and event.title == "demotrace-right" for event in events)
    stored = [spool.load_frame(frame.frame_id) for frame in taken]
    assert all(frame is not None for frame in stored)
    # On mains power the encoder keeps deltas across a window switch (measured smaller and cheaper
    # than a key frame there, bench/frames.py); each still resolves to a whole image.
    assert [frame.media_type == DELTA_MEDIA_TYPE for frame in stored] == [False, True, True, True, True]  # type: ignore[union-attr]
    resolve = resolving_loader(spool.load_frame)
    for frame in taken:
        resolved = resolve(frame.frame_id)
        assert resolved is not None and resolved.media_type != DELTA_MEDIA_TYPE
        assert Image.open(io.BytesIO(resolved.data)).size == (frame.width, frame.height)
    resolve = resolving_loader(spool.load_frame)
    for frame in taken:
        resolved = resolve(frame.frame_id)
        assert resolved is not None
        assert pixels_of(resolved).size == (desktop.width, desktop.height)
    spool.close()


def test_the_recorder_starts_a_new_chain_when_the_power_state_changes(
    desktop: VirtualDesktop, tmp_path: Path
) -> None:
    # On battery the encoder switches to cheaper settings; a delta must never mix them with its chain's,
    # so the first frame after the switch is a key frame. Power state injected through the gate.
    spool = Spool(tmp_path / "spool", os.urandom(32))
    gate = CaptureGate(DEFAULT_LOCAL_POLICY, notice_accepted=True)
    with xterm(desktop, "demotrace-power", "60x20+50+50") as window:
        xdotool(desktop, "windowactivate", "--sync", str(window))
        with recording(spool, desktop.display, gate):
            xdotool(desktop, "type", "--delay", "20", "abc")  # on mains: a delta
            time.sleep(1.3)
            gate.update_state(on_battery=True, battery_percent=60.0)
            xdotool(desktop, "type", "--delay", "20", "def")  # on battery now: a new chain, a key frame
            time.sleep(1.3)
            xdotool(desktop, "type", "--delay", "20", "ghi")  # the battery chain goes on with a delta
            time.sleep(0.8)
    taken = [e for batch in spool.batches() for e in batch.events if isinstance(e, FrameTaken)]
    assert [frame.trigger for frame in taken] == ["start", "key", "key", "key"]
    stored = [spool.load_frame(frame.frame_id) for frame in taken]
    assert [frame is not None and frame.media_type == DELTA_MEDIA_TYPE for frame in stored] == [
        False,
        True,
        False,
        True,
    ]
    assert stored[3] is not None and stored[2] is not None and stored[3].base_frame_id == stored[2].frame_id


def test_a_frame_held_for_a_deferred_scrub_is_a_whole_png_of_exactly_its_pixels() -> None:
    image = Image.new("RGB", (320, 200), (240, 240, 240))
    ImageDraw.Draw(image).text((10, 10), "held until the charger is back in 4242", fill=(20, 20, 20))
    encoded = encode_held(ScreenPixels.of_image(image))
    assert encoded.is_key and encoded.media_type == "image/png"
    with Image.open(io.BytesIO(encoded.data)) as decoded:
        assert decoded.format == "PNG" and decoded.convert("RGB").tobytes() == image.tobytes()
