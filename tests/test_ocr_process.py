"""Screen OCR in its worker process: same answer as in the recorder's process, failures cost a frame
(never an unscrubbed one), and the worker never outlives the recorder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from demotrace.capture.ocr_process import OcrProcessScrubber
from demotrace.capture.scrub import FrameScrubber
from demotrace.frames.pixels import ScreenPixels
from demotrace.redact.ocr import OcrError, OcrSettings, ocr_words
from tests.test_screen_redaction import EMAIL, LINES, ORDINARY, assert_no_secret_visible, render


def read_text(image: object) -> str:
    return " ".join(word.text for word in ocr_words(image))  # type: ignore[arg-type]


@pytest.fixture()
def scrubber() -> OcrProcessScrubber:
    made = OcrProcessScrubber()
    yield made  # type: ignore[misc]
    made.close()


def test_the_worker_finds_what_the_in_process_scrubber_finds(scrubber: OcrProcessScrubber) -> None:
    rendered = render(LINES)
    in_worker = scrubber.scrub_result(rendered.image)
    in_process = FrameScrubber().scrub_result(rendered.image)
    assert in_worker.boxes == in_process.boxes and in_worker.boxes
    assert in_worker.image.tobytes() == in_process.image.tobytes()
    text = read_text(in_worker.image)
    assert_no_secret_visible(text)
    assert all(word in text for word in ORDINARY)
    assert scrubber.worker_pid is not None and scrubber.worker_pid != os.getpid()


def test_the_worker_reads_lines_without_numpy_or_the_detectors(scrubber: OcrProcessScrubber) -> None:
    # The recorder finds the lines and decides what to cover; the worker only reads: a second copy of
    # numpy in it was 16 MiB of the recorder's process tree.
    scrubbed = scrubber.scrub(render(LINES).image)
    assert_no_secret_visible(read_text(scrubbed))
    assert scrubber.worker_pid is not None
    maps = Path(f"/proc/{scrubber.worker_pid}/maps").read_text()
    assert "tesserocr" in maps  # the worker is the one that read
    assert "numpy" not in maps
    loaded = subprocess.run(
        [sys.executable, "-c", "import demotrace.capture.ocr_worker, sys; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'numpy'" not in loaded and "'phonenumbers'" not in loaded and "'PIL'" not in loaded


def test_a_grab_is_covered_in_place_from_its_own_bgrx_bytes(scrubber: OcrProcessScrubber) -> None:
    # What the recorder does: the grab's buffer goes to the worker as it is and the boxes are painted
    # into that very buffer, in the same places as the in-process scrubber paints them.
    rendered = render(LINES)
    grab = ScreenPixels.of_image(rendered.image)
    pixels = ScreenPixels(bytearray(grab.data), grab.width, grab.height)
    # The grey levels go to the worker band by band: the same bytes as the in-process grey frame.
    assert b"".join(pixels.grey_bands(rows=7)) == pixels.grey_array().tobytes()
    boxes = scrubber.cover(pixels, None)
    expected = FrameScrubber().scrub_result(rendered.image)
    assert boxes == expected.boxes and boxes
    assert pixels.image().tobytes() == expected.image.tobytes()
    assert_no_secret_visible(read_text(pixels.image()))


def test_the_worker_reads_only_what_changed_and_forgets_on_request(scrubber: OcrProcessScrubber) -> None:
    first = render(LINES[:2])
    scrubber.scrub_result(first.image)
    again = scrubber.scrub_result(first.image)
    assert again.regions == []  # nothing changed: nothing read, the card stays covered
    assert again.boxes
    scrubber.forget()
    after_forget = scrubber.scrub_result(first.image)
    assert after_forget.regions  # the whole frame is read again


def test_a_worker_that_dies_mid_frame_costs_that_frame_and_the_next_gets_a_new_worker(
    tmp_path: Path,
) -> None:
    # A "tesseract" that kills the worker that ran it: the worker dies in the middle of a frame.
    killer = tmp_path / "tesseract"
    killer.write_text("#!/bin/sh\nkill -9 $PPID\n")
    killer.chmod(0o755)
    scrubber = OcrProcessScrubber(OcrSettings(engine="cli", reader="bands", tesseract=str(killer)))
    try:
        with pytest.raises(OcrError, match="OCR worker failed"):
            scrubber.scrub(render(LINES).image)  # the caller drops this frame, never keeps it unscrubbed
        assert scrubber.worker_pid is None
    finally:
        scrubber.close()


def test_a_worker_killed_between_frames_is_replaced(scrubber: OcrProcessScrubber) -> None:
    scrubber.scrub(render(LINES[1:]).image)
    first_pid = scrubber.worker_pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    image = render(LINES).image  # a line it has not read yet: the worker is needed again
    try:
        scrubbed = scrubber.scrub(image)
    except OcrError:  # it was still dying when the frame was sent: that frame is lost, not leaked
        scrubbed = scrubber.scrub(image)
    assert scrubber.worker_pid not in (None, first_pid)
    assert_no_secret_visible(read_text(scrubbed))


def test_tesseract_missing_in_the_worker_is_the_same_clear_error() -> None:
    scrubber = OcrProcessScrubber(OcrSettings(language="xx"))
    try:
        with pytest.raises(OcrError, match="no Tesseract model for 'xx'"):
            scrubber.scrub(render(LINES).image)
        assert scrubber.worker_pid is not None  # an OCR error is an answer, not a crash
    finally:
        scrubber.close()


def test_the_worker_ends_when_the_recorder_is_killed() -> None:
    # A stand-in recorder process starts a worker, then is SIGKILLed: no pipe is closed cleanly.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from PIL import Image, ImageDraw
                from demotrace.capture.ocr_process import OcrProcessScrubber
                scrubber = OcrProcessScrubber()
                image = Image.new("RGB", (240, 64), "white")
                ImageDraw.Draw(image).text((8, 24), "Quarterly report", fill="black")
                scrubber.scrub(image)  # a line to read: the worker starts
                print(scrubber.worker_pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    worker = psutil.Process(worker_pid)
    assert worker.name() == "dt-ocr-worker" and worker.nice() > 0  # named, and below the user's programs
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the OCR worker outlived the recorder"
        time.sleep(0.05)


def test_email_and_card_stay_covered_across_frames(scrubber: OcrProcessScrubber) -> None:
    lines = [*LINES[:2], f"Write to {EMAIL} about the invoice"]
    for _ in range(3):
        text = read_text(scrubber.scrub(render(lines).image))
        assert_no_secret_visible(text)


def test_a_request_cut_short_by_a_killed_recorder_ends_the_worker_quietly() -> None:
    # bench/fault_kills.py: a recorder SIGKILLed while it sent a frame left a traceback on the terminal.
    import io

    from demotrace.capture.ocr_protocol import OcrRequest, write_message
    from demotrace.capture.ocr_worker import serve

    requests = io.BytesIO()
    write_message(requests, OcrRequest("scrub", (0, 0, 64, 64), 64, 64, 64 * 64 * 3), b"\xff" * 1000)
    requests.seek(0)
    replies = io.BytesIO()
    serve(OcrSettings(), requests, replies)  # returns: no EOFError
    assert replies.getvalue() == b""
