"""Masked-echo detection on pixels: fields drawn with Pillow (several fonts, sizes, themes, carets) and
real Tk entries on the X server, grabbed before and after typing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mss
import pytest
from PIL import Image, ImageDraw, ImageFont

from demotrace.capture.masked_echo import (
    EchoVerdict,
    can_tell_mask_from_text,
    grey,
    read_masked_echo,
)
from demotrace.demo.desktop import VirtualDesktop

FIELD = (360, 40)
TEXT_AT = (6, 8)
TYPED = "hunter2-Secret!"


def font_file(name: str) -> str:
    found = subprocess.run(["fc-match", "-f", "%{file}", name], capture_output=True, text=True, check=False)
    path = found.stdout.strip()
    if not path or not Path(path).exists():
        pytest.fail(f"font {name!r} not found (fc-match): install fonts-dejavu")
    return path


def field(
    text: str,
    size: int = 14,
    *,
    font: str = "DejaVu Sans",
    dark: bool = False,
    caret: int | None = 2,
    caret_gap: int = 1,
) -> Image.Image:
    """A one-line entry showing ``text``, with a caret ``caret`` px wide after it (None: blinked off)."""
    paper, ink = ((30, 30, 34), (230, 230, 230)) if dark else ((255, 255, 255), (20, 20, 20))
    image = Image.new("RGB", FIELD, paper)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, FIELD[0] - 1, FIELD[1] - 1), outline=(120, 120, 120))
    face = ImageFont.truetype(font_file(font), size)
    draw.text(TEXT_AT, text, font=face, fill=ink)
    if caret is not None:
        x = TEXT_AT[0] + round(draw.textlength(text, font=face)) + caret_gap
        draw.rectangle((x, 5, x + caret - 1, FIELD[1] - 6), fill=ink)
    return image


def verdict(before: Image.Image, after: Image.Image, typed: str) -> EchoVerdict:
    return read_masked_echo(grey(before), grey(after), typed).verdict


# -- masks are recognised ------------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["*", "\u2022", "\u25cf", "x"])
@pytest.mark.parametrize("size", [10, 14, 22])
def test_a_row_of_identical_mask_glyphs_is_a_masked_echo(mask: str, size: int) -> None:
    typed = TYPED[:6]
    reading = read_masked_echo(grey(field("", size)), grey(field(mask * 6, size)), typed)
    assert reading.verdict == "masked", reading
    assert reading.glyphs == 6


@pytest.mark.parametrize("font", ["DejaVu Serif", "DejaVu Sans Mono"])
def test_other_fonts_and_a_dark_theme(font: str) -> None:
    before, after = field("", font=font, dark=True), field("\u2022" * 7, font=font, dark=True)
    assert verdict(before, after, TYPED[:7]) == "masked"


@pytest.mark.parametrize("caret_before", [None, 2])
@pytest.mark.parametrize("caret", [None, 1, 2])
@pytest.mark.parametrize("caret_gap", [0, 3])
@pytest.mark.parametrize("mask", ["\u2022", "\u25cf"])
def test_the_caret_is_not_a_glyph_blinking_or_touching(
    caret_before: int | None, caret: int | None, caret_gap: int, mask: str
) -> None:
    before = field("", 10, caret=caret_before)
    after = field(mask * 5, 10, caret=caret, caret_gap=caret_gap)
    assert verdict(before, after, TYPED[:5]) == "masked"


def test_a_focus_ring_that_changes_is_not_a_glyph() -> None:
    """The click that ends the typing may come before the echo is grabbed: the field loses its focus
    ring and its caret."""
    before = field("", caret=2)
    after = field("\u2022" * 6, caret=None)
    ImageDraw.Draw(before).rectangle((0, 0, FIELD[0] - 1, FIELD[1] - 1), outline=(0, 0, 0))
    ImageDraw.Draw(before).rectangle((1, 1, FIELD[0] - 2, FIELD[1] - 2), outline=(0, 0, 0))
    assert verdict(before, after, TYPED[:6]) == "masked"
    assert verdict(before, field(TYPED[:6], caret=None), TYPED[:6]) == "text"


def test_the_first_glyph_may_already_be_there_and_the_last_not_yet() -> None:
    # The echo of key 1 was drawn before `before` was grabbed; key 6 is not drawn yet.
    assert verdict(field("*"), field("*" * 5), TYPED[:6]) == "masked"


def test_glyphs_at_fractional_advances_still_match() -> None:
    """Browsers place glyphs at sub-pixel positions: each copy is anti-aliased differently."""
    scale = 4
    big = Image.new("L", (FIELD[0] * scale, FIELD[1] * scale), 255)
    draw = ImageDraw.Draw(big)
    face = ImageFont.truetype(font_file("DejaVu Sans"), 13 * scale)
    for index in range(7):
        draw.text((scale * (6 + index * 7.4), scale * 8), "\u2022", font=face, fill=0)
    after = big.resize(FIELD, Image.Resampling.LANCZOS)
    before = Image.new("L", FIELD, 255)
    assert verdict(before, after, TYPED[:7]) == "masked"


def test_an_unrelated_change_elsewhere_does_not_hide_the_mask() -> None:
    before, after = field(""), field("\u2022" * 6)
    for image, label in ((before, "Saved 10:41"), (after, "Saving...")):
        canvas = Image.new("RGB", (FIELD[0], 120), (240, 240, 240))
        canvas.paste(image, (0, 0))
        ImageDraw.Draw(canvas).text((10, 80), label, fill=(0, 0, 0))
        if label.startswith("Saved"):
            before = canvas
        else:
            after = canvas
    assert verdict(before, after, TYPED[:6]) == "masked"


# -- text is not a mask --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 14, 22])
def test_plain_text_is_text(size: int) -> None:
    typed = TYPED[:8]
    assert verdict(field("", size), field(typed, size), typed) == "text"


@pytest.mark.parametrize("typed", ["aaaa", "1111", "Il1l", "a a a", "OOOO0"])
def test_repeated_characters_in_a_plain_field_are_never_called_a_mask(typed: str) -> None:
    """They may draw identical glyphs: the verdict waits for a key that looks different, even when the
    pixels are a real mask."""
    assert verdict(field(""), field(typed), typed) != "masked"
    assert verdict(field(""), field("*" * len(typed)), typed) == "undecided"


@pytest.mark.parametrize("typed", ["aaab", "passsword", "xxxxxxxy", "mmmm mmmm"])
def test_text_with_runs_of_one_letter_is_text(typed: str) -> None:
    assert verdict(field(""), field(typed), typed) == "text"


def test_identical_glyphs_in_a_number_unlike_the_keys_typed_are_not_a_mask() -> None:
    # Nine stars appear (a rating widget, say) while three keys were typed.
    assert verdict(field(""), field("*" * 9), TYPED[:3]) == "undecided"
    # Two keys' worth is too few to tell.
    assert verdict(field(""), field("*" * 2), TYPED[:2]) == "undecided"


def test_nothing_drawn_or_another_area_is_undecided() -> None:
    assert verdict(field(""), field(""), TYPED[:4]) == "undecided"
    small = read_masked_echo(grey(field("")), grey(field("***")).copy()[:, :100], TYPED[:3])
    assert small.verdict == "undecided"


def test_which_typed_characters_tell_a_mask_from_text() -> None:
    assert can_tell_mask_from_text("hunter2", 6)
    assert not can_tell_mask_from_text("aaaa", 4)
    assert not can_tell_mask_from_text("abbbb", 4)  # the glyphs may echo "bbbb" (the "a" drawn before)
    assert not can_tell_mask_from_text("a a a", 5)  # spaces draw nothing in a plain field
    assert not can_tell_mask_from_text("l1Il", 4)  # look-alikes
    assert can_tell_mask_from_text("aabab", 3)


# -- real Tk entries on the X server --------------------------------------------------------------

ENTRY_APP = """
import sys, tkinter as tk
root = tk.Tk(className="EchoCheck")
root.title(sys.argv[1])
root.geometry("420x120+200+200")
entry = tk.Entry(root, show=sys.argv[2], width=30)
entry.pack(padx=20, pady=40)
entry.focus_set()
root.mainloop()
"""
AREA = {"left": 200, "top": 200, "width": 420, "height": 120}


def grab_grey(screen: mss.base.MSSBase) -> Image.Image:
    shot = screen.grab(AREA)
    return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")


@pytest.mark.x11
@pytest.mark.parametrize(
    ("show", "expected"), [("*", "masked"), ("\u2022", "masked"), ("\u25cf", "masked"), ("", "text")]
)
def test_real_tk_entries(desktop: VirtualDesktop, show: str, expected: EchoVerdict) -> None:
    title = f"Echo check {ord(show) if show else 0}"
    app = desktop.spawn([sys.executable, "-c", ENTRY_APP, title, show])
    try:
        env = desktop.env()
        subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", title], env=env, check=True)
        subprocess.run(["xdotool", "mousemove", "400", "260", "click", "1"], env=env, check=True)
        time.sleep(0.3)
        typed = "s3cret-Pass"
        with mss.MSS(display=desktop.display) as screen:
            before = grab_grey(screen)
            subprocess.run(["xdotool", "type", "--delay", "20", typed], env=env, check=True)
            time.sleep(0.2)
            after = grab_grey(screen)
        reading = read_masked_echo(grey(before), grey(after), typed)
        assert reading.verdict == expected, reading
        if expected == "masked":
            assert reading.glyphs == len(typed)
    finally:
        app.terminate()
        app.wait(timeout=5)
