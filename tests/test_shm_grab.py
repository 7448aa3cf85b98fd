"""Frames are grabbed through the X server's shared memory into reused buffers, pixel for pixel what
mss's public grab gives, on a real Xvfb with a real window on it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import mss
import numpy
import pytest

from demotrace.capture.grab import FrameBuffers, grab_pixels, shm_grab_into
from demotrace.demo.desktop import VirtualDesktop
from demotrace.model import Monitor


@pytest.fixture()
def painted(bare_desktop: VirtualDesktop) -> Iterator[VirtualDesktop]:
    # Something to see besides the black root: an xterm with text, near the top-left corner.
    term = bare_desktop.spawn(
        [
            "xterm",
            "-geometry",
            "60x10+40+30",
            "-bg",
            "white",
            "-fg",
            "blue",
            "-e",
            "sh",
            "-c",
            "echo hi; sleep 60",
        ]
    )
    time.sleep(1.5)
    try:
        yield bare_desktop
    finally:
        term.kill()
        term.wait()


def test_the_x_server_writes_grabs_straight_into_the_buffers_as_the_public_grab_gives_them(
    painted: VirtualDesktop,
) -> None:
    buffers = FrameBuffers(limit=1)
    with mss.MSS(display=painted.display) as screen:
        for box in (
            {"left": 0, "top": 0, "width": 1280, "height": 800},
            {"left": 30, "top": 20, "width": 200, "height": 90},
        ):
            size = box["width"] * box["height"] * 4
            pooled, one_off = buffers.take(size), buffers.take(size)
            assert pooled.pooled and not one_off.pooled
            assert shm_grab_into(screen, box, pooled) and shm_grab_into(screen, box, one_off)
            assert pooled.segment is not None  # attached for good; the one-off only for its grab
            assert one_off.segment is None
            public = bytes(screen.grab(box).raw)
            assert bytes(pooled.view) == public and bytes(one_off.view) == public
            # Not a blank screen: the black root, the xterm's white and its blue text are all in it.
            assert len(numpy.unique(numpy.frombuffer(public, numpy.uint32))) >= 3
            buffers.give_back(one_off.view)
            assert one_off.fd is None  # a one-off buffer is not kept
            # The pooled buffer's segment serves its next grab too.
            segment = pooled.segment
            buffers.give_back(pooled.view)
            again = buffers.take(size)
            assert again is pooled and shm_grab_into(screen, box, again) and again.segment is segment
            buffers.give_back(again.view)
            buffers.clear()
            buffers = FrameBuffers(limit=1)


def test_grab_buffers_are_reused_once_the_pixels_are_dropped(painted: VirtualDesktop) -> None:
    buffers = FrameBuffers(limit=2)
    monitor = Monitor(0, 0, 1280, 800)
    with mss.MSS(display=painted.display) as screen:
        first = grab_pixels(screen, monitor, buffers)
        second = grab_pixels(screen, monitor, buffers)
        assert buffers.made == 2 and first.data is not second.data  # both alive: two buffers
        reused = second.data
        del second
        third = grab_pixels(screen, monitor, buffers)
        assert third.data is reused and buffers.made == 2
        assert bytes(third.data) == bytes(
            screen.grab({"left": 0, "top": 0, "width": 1280, "height": 800}).raw
        )
        assert bytes(first.data) == bytes(third.data)  # nothing moved on screen in between
        # Both pooled buffers in use: a one-off one, not kept once its pixels are dropped.
        extra = grab_pixels(screen, monitor, buffers)
        assert buffers.made == 3 and bytes(extra.data) == bytes(first.data)
        one_off = extra.data
        del extra, third
        again = grab_pixels(screen, monitor, buffers)
        assert again.data is reused and again.data is not one_off


def test_a_grab_past_the_frames_in_flight_waits_until_the_encoder_lets_one_go(
    painted: VirtualDesktop,
) -> None:
    buffers = FrameBuffers(limit=2, most=3)
    monitor = Monitor(0, 0, 1280, 800)
    with mss.MSS(display=painted.display) as screen:
        in_flight = [grab_pixels(screen, monitor, buffers) for _ in range(3)]  # two pooled, one one-off
        assert buffers.made == 3
        encoded = threading.Event()

        def encode_the_oldest() -> None:
            time.sleep(0.3)
            encoded.set()
            in_flight.pop(0)  # its last reference: the buffer goes back to the pool

        encoder = threading.Thread(target=encode_the_oldest)
        encoder.start()
        buffers.wait_for_room(timeout=60)
        assert encoded.is_set()  # it returned only once a frame was let go
        encoder.join()
        in_flight.append(grab_pixels(screen, monitor, buffers))
        assert buffers.made == 3  # into the freed pooled buffer: no new mapping
        # A frame held elsewhere for longer than the wait does not stop the grabs: one more mapping.
        buffers.wait_for_room(timeout=0.05)
        in_flight.append(grab_pixels(screen, monitor, buffers))
        assert buffers.made == 4 and len(in_flight) == 4
    # Without a cap, the wait never blocks.
    uncapped = FrameBuffers(limit=1)
    held = [uncapped.take(64) for _ in range(3)]
    assert uncapped.wait_for_room(timeout=60) == 0.0 and len(held) == 3


def test_without_shared_memory_the_public_grab_is_used(painted: VirtualDesktop) -> None:
    monitor = Monitor(30, 20, 200, 90)
    box = {"left": 30, "top": 20, "width": 200, "height": 90}
    with mss.MSS(display=painted.display, backend="xgetimage") as screen:
        assert not shm_grab_into(screen, box, FrameBuffers().take(200 * 90 * 4))
        pixels = grab_pixels(screen, monitor, FrameBuffers())
        assert bytes(pixels.data) == bytes(screen.grab(box).raw)


def test_without_memfd_the_buffers_are_filled_from_the_public_grab(
    painted: VirtualDesktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memfd(name: str, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", no_memfd)  # an old kernel
    monitor = Monitor(30, 20, 200, 90)
    buffers = FrameBuffers()
    with mss.MSS(display=painted.display) as screen:
        buffer = buffers.take(200 * 90 * 4)
        assert buffer.fd is None and not shm_grab_into(
            screen, {"left": 30, "top": 20, "width": 200, "height": 90}, buffer
        )
        buffers.give_back(buffer.view)
        pixels = grab_pixels(screen, monitor, buffers)
        assert bytes(pixels.data) == bytes(
            screen.grab({"left": 30, "top": 20, "width": 200, "height": 90}).raw
        )
        assert pixels.data is buffer.view  # still a reused buffer
