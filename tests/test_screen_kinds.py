"""Screens the first OCR tests lacked: a dark theme, a scrolled list of card numbers and a browser-like page
of small proportional text (a real terminal scrolling its output is in test_screen_xterm.py). Each checks
pixels: every sensitive word's ink lies under a box, and ordinary words stay clear."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from demotrace.geometry import Box
from demotrace.redact.detectors import screen_detectors
from demotrace.redact.detectors.own_identity import Identity
from demotrace.redact.scrubber import ScreenScrubber
from tests.test_screen_redaction import covered, font_file

CARDS = ("4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881", "6011 1111 1111 1117")
NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov")
# No identity: these screens hold no login or host name, and the box counts must not depend on the
# machine that runs the test.
DETECTORS = screen_detectors(identity=Identity())


@dataclass
class Page:
    image: Image.Image
    secret: list[Box]  # ink of every sensitive word
    ordinary: list[Box]  # ink of ordinary words worth keeping readable


def draw_words(
    draw: ImageDraw.ImageDraw,
    page: Page,
    x: float,
    y: int,
    words: Sequence[tuple[str, bool]],
    font: ImageFont.FreeTypeFont,
    fill: str,
) -> None:
    for text, secret in words:
        draw.text((x, y), text, fill=fill, font=font)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        (page.secret if secret else page.ordinary).append(Box(int(left), int(top), int(right), int(bottom)))
        x += draw.textlength(text + " ", font=font)


def plain(text: str) -> list[tuple[str, bool]]:
    return [(word, False) for word in text.split()]


def secret(text: str) -> list[tuple[str, bool]]:
    return [(word, True) for word in text.split()]


def assert_covered(page: Page, boxes: list[Box]) -> None:
    for ink in page.secret:
        assert covered(boxes, ink), f"secret ink at {ink} is not covered: {boxes}"
    hit = [ink for ink in page.ordinary if any(box.intersects(ink) for box in boxes)]
    assert not hit, f"ordinary words blacked out at {hit}"


def test_a_dark_theme_editor_is_covered_like_a_light_one() -> None:
    font = ImageFont.truetype(font_file("DejaVu Sans Mono"), 14)
    page = Page(Image.new("RGB", (900, 260), (30, 30, 30)), [], [])
    draw = ImageDraw.Draw(page.image)
    draw.rectangle((0, 0, 900, 24), fill=(60, 60, 60))  # a tab bar
    rows = [
        plain("# settings for the staging deploy"),
        [*plain("AWS_KEY ="), *secret("AKIAIOSFODNN7EXAMPLE")],
        [*plain("OWNER ="), *secret("maria.k@example.com")],
        [*plain("BILLING ="), *secret(CARDS[0])],
        plain("REGION = eu-west-1"),
    ]
    for index, row in enumerate(rows):
        colour = "#6a9955" if index == 0 else "#d4d4d4"
        draw_words(draw, page, 16, 40 + index * 22, row, font, colour)

    boxes = ScreenScrubber(DETECTORS).scrub(page.image).boxes

    assert_covered(page, boxes)


def list_page(first_row: int, rows: int = 9) -> Page:
    """A list panel showing ``rows`` orders from ``first_row`` on, 20 px apart: scrolling moves every
    row by 20 px and brings one new row in."""
    font = ImageFont.truetype(font_file("DejaVu Sans"), 13)
    page = Page(Image.new("RGB", (760, 40 + rows * 20), (236, 236, 236)), [], [])
    draw = ImageDraw.Draw(page.image)
    draw.rectangle((10, 30, 740, 30 + rows * 20), fill="white", outline=(150, 150, 150))
    draw.text((12, 8), "Orders", fill="black", font=font)
    for shown in range(rows):
        order = first_row + shown
        card = CARDS[order % len(CARDS)]
        name = NAMES[order % len(NAMES)]
        words = [*plain(f"Order {1000 + order} {name}"), *secret(card), *plain("paid")]
        draw_words(draw, page, 20, 34 + shown * 20, words, font, "black")
    return page


def test_a_scrolled_list_of_card_numbers_stays_covered_and_moved_rows_are_not_read_again() -> None:
    scrubber = ScreenScrubber(DETECTORS)
    first, scrolled = list_page(0), list_page(1)

    assert_covered(first, scrubber.scrub(first.image).boxes)
    read_before = scrubber.lines.stats.lines_read
    result = scrubber.scrub(scrolled.image)

    assert_covered(scrolled, result.boxes)
    stats = scrubber.lines.stats
    # Eight rows moved up by one row's height: same pixels, so the cache answers; only the new row is
    # read (and whatever the panel's edge cut).
    assert stats.lines_read - read_before <= 2, stats
    assert stats.lines_cached >= 8, stats


def test_a_browser_like_page_of_small_proportional_text() -> None:
    body = ImageFont.truetype(font_file("DejaVu Sans"), 11)
    heading = ImageFont.truetype(font_file("DejaVu Sans:bold"), 18)
    page = Page(Image.new("RGB", (1000, 300), "white"), [], [])
    draw = ImageDraw.Draw(page.image)
    draw.rectangle((0, 0, 1000, 34), fill=(222, 225, 230))  # tabs and address bar
    draw.rounded_rectangle((90, 6, 700, 28), 10, fill="white")
    draw.text((104, 10), "intranet.example.org/people/contact", fill=(60, 60, 60), font=body)
    draw.text((40, 52), "Contact details", fill="black", font=heading)
    draw_words(
        draw, page, 40, 90,
        [*plain("For questions about the quarterly report please write to"), *secret("li.wei@corp-mail.de"),
         *plain("or call")], body, (40, 40, 40),
    )  # fmt: skip
    draw_words(
        draw,
        page,
        40,
        108,
        [*secret("+1 415-555-0132"), *plain("between nine and five.")],
        body,
        (40, 40, 40),
    )
    draw_words(draw, page, 40, 140, plain("Payment card on file"), body, (90, 90, 90))
    draw.rectangle((40, 158, 320, 180), outline=(170, 170, 170), fill="white")
    draw_words(draw, page, 46, 162, secret(CARDS[1]), body, "black")
    draw_words(
        draw, page, 40, 200, plain("Read the privacy notice and the travel policy"), body, (26, 13, 171)
    )

    boxes = ScreenScrubber(DETECTORS).scrub(page.image).boxes

    # At 11 px a space is ~3 px, no wider than the room around a "." in a terminal font: the word right
    # beside a value may go under its box (a token is covered whole, never cut at a dot).
    beside = {
        page.ordinary.index(ink) for ink in page.ordinary for value in page.secret if _beside(ink, value)
    }
    page.ordinary = [ink for index, ink in enumerate(page.ordinary) if index not in beside]
    assert_covered(page, boxes)
    assert len(boxes) <= 6, boxes


def _beside(ink: Box, value: Box) -> bool:
    same_row = ink.top < value.bottom and value.top < ink.bottom
    return same_row and (0 <= value.left - ink.right <= 4 or 0 <= ink.left - value.right <= 4)
