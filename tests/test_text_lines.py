"""The pure pieces of the line reader, without OCR: text lines found in pixels, the verdict cache, and
what a sensitive word's cover spans."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from demotrace.geometry import Box
from demotrace.redact.line_reader import LineCache, changed_rows, line_key
from demotrace.redact.lines import OcrWord
from demotrace.redact.screen import cover_line, lenient_tokens, sensitive_words
from demotrace.redact.text_lines import MAX_LINE_PX, lines_in
from tests.test_screen_redaction import font_file


def grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


def test_lines_are_found_per_row_and_column_and_a_border_is_not_glued_to_its_text() -> None:
    font = ImageFont.truetype(font_file("DejaVu Sans"), 14)
    image = Image.new("L", (800, 200), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 390, 190), outline=0)  # a panel border, taller than any line
    draw.text((14, 20), "first line of text", fill=0, font=font)
    draw.text((14, 50), "second line", fill=0, font=font)
    draw.text((500, 20), "far column", fill=0, font=font)
    draw.rectangle((14, 90, 380, 130), fill=30)  # a dark row with light text (a selection)
    draw.text((20, 100), "selected row", fill=250, font=font)

    lines = lines_in(grey(image), Box(0, 0, 800, 200))

    boxes = [line.box for line in lines]
    assert any(abs(box.left - 14) <= 1 and 15 <= box.top <= 25 for box in boxes), boxes
    assert all(box.height <= MAX_LINE_PX for box in boxes)
    assert not any(box.left <= 10 < box.right for box in boxes), "the border was glued to a line"
    first = next(box for box in boxes if box.top < 40 and box.left < 100)
    assert first.right < 300, "the far column joined the first line"
    assert any(box.left >= 498 for box in boxes), "the far column is missing"
    assert any(90 <= box.top <= 110 for box in boxes), "the selected row was not found"


def test_a_block_cursor_touching_a_descender_is_cut_off_the_line_and_a_line_stays_whole() -> None:
    font = ImageFont.truetype(font_file("DejaVu Sans Mono"), 12)
    image = Image.new("L", (400, 120), 255)
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), "root@vm:/tmp# sleep 30", fill=0, font=font)
    draw.text((10, 60), "gypsy jumping Quality", fill=0, font=font)
    ink_rows = np.flatnonzero((grey(image)[:50] < 128).any(axis=1))
    # The cursor's cell starts on the row after the descender's last one, under the prompt's "r".
    cursor = Box(10, int(ink_rows[-1]) + 1, 17, int(ink_rows[-1]) + 15)
    draw.rectangle((cursor.left, cursor.top, cursor.right - 1, cursor.bottom - 1), fill=0)

    boxes = [line.box for line in lines_in(grey(image), Box(0, 0, 400, 120))]

    prompt = next(box for box in boxes if box.top < 20)
    assert prompt.bottom <= cursor.top and prompt.right > 150, f"the prompt was glued to the cursor: {boxes}"
    plain = [box for box in boxes if box.top >= 50]
    assert len(plain) == 1 and plain[0].bottom - plain[0].top >= 12, f"a plain line was cut: {plain}"


def test_changed_rows_are_padded_by_a_line_and_nothing_changed_is_nothing() -> None:
    before = np.full((300, 400), 255, np.uint8)
    assert changed_rows(before, before.copy())[0] == []
    after = before.copy()
    after[150, 10] = 0
    (region,), changed = changed_rows(before, after)
    assert region == Box(0, 150 - MAX_LINE_PX, 400, 151 + MAX_LINE_PX)
    assert changed.within(Box(10, 150, 11, 151))
    assert not changed.within(Box(0, 0, 400, 150)) and not changed.within(Box(11, 150, 400, 300))


def test_the_cache_answers_by_pixels_wherever_the_line_is_and_forgets_the_oldest() -> None:
    line = np.full((12, 40), 255, np.uint8)
    line[3:9, 5:30] = 0
    moved = line.copy()  # the same pixels, elsewhere on the screen
    other = line.copy()
    other[4, 31] = 0
    cache = LineCache(2)
    cache.put(line_key(line, False), (Box(1, 2, 3, 4),))
    assert cache.get(line_key(moved, False)) == (Box(1, 2, 3, 4),)
    assert cache.get(line_key(other, False)) is None
    assert cache.get(line_key(line, True)) is None  # read as a block, a different verdict
    cache.put(line_key(other, False), ())
    cache.put(line_key(np.zeros((2, 2), np.uint8), False), ())
    assert len(cache) == 2 and cache.get(line_key(line, False)) is None


def word(text: str, left: int, right: int) -> OcrWord:
    return OcrWord(text, Box(left, 10, right, 22), 90.0)


def ink(spans: list[tuple[int, int]], width: int = 200) -> np.ndarray:
    columns = np.zeros(width, bool)
    for left, right in spans:
        columns[left:right] = True
    return columns


LINE = Box(0, 10, 200, 22)


def test_a_value_is_covered_over_the_ink_ocr_dropped() -> None:
    # "Email jane.doe@example.com" read as "Ema ne.doe@example.com": "il ja" dropped.
    words = [word("Ema", 0, 20), word("ne.doe@example.com", 44, 150)]
    columns = ink([(0, 32), (38, 150)])  # "Email", then the whole address as one token
    (box,) = cover_line(words, LINE, columns, None, 200, 40)
    assert box.left <= 38 and box.right >= 150
    assert box.left > 20  # "Ema" stays readable


def test_a_card_group_ocr_never_read_is_covered_with_the_rest() -> None:
    words = [word("4242", 40, 64), word("4242", 70, 94), word("4242", 100, 124)]
    columns = ink([(10, 34), (40, 64), (70, 94), (100, 124)])  # the first group has ink, no word
    boxes = cover_line(words, LINE, columns, None, 200, 40)
    assert min(box.left for box in boxes) <= 10


def test_a_separate_plain_word_in_the_same_ink_stays_readable() -> None:
    # Small proportional text: "to" touches the address within letter spacing, but it is a word.
    words = [word("to", 0, 10), word("li.wei@corp-mail.de", 14, 100), word("or", 104, 112)]
    (box,) = cover_line(words, LINE, ink([(0, 112)]), None, 200, 40)
    assert box.left >= 10 and box.right <= 104


def test_an_email_cut_at_its_last_dot_is_still_found() -> None:
    line = [word("echo", 0, 30), word("jane.doe@example.", 40, 140), word("conf", 152, 180)]
    assert [found.word.text for found in sensitive_words(line)] == ["jane.doe@example.", "conf"]
    assert lenient_tokens(["jane,", "doeBexample,com"]) == ["jane,", "doe@example.com"]
