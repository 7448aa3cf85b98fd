"""Precision and recall of the typed-text detectors on a generated, labelled corpus; with ``--ocr``,
the cost and coverage of screen (OCR) redaction per frame.

    .venv/bin/python bench/redaction.py [--per-type 1000] [--seed 7]
    .venv/bin/python bench/redaction.py --ocr [--ocr-frames 6] [--ocr-only]

For each type, a seeded generator makes positives (real-shaped values: cards of several brands with and
without separators, SSNs, IBANs of several countries, emails, phones in several formats, vendor keys,
JWTs, private-key blocks, random tokens) and near-miss negatives (Luhn-failing cards, SSNs in areas
never issued, IBANs with a wrong checksum, "name at domain" emails, too-short or unassigned phone
numbers, English words, paths, file names, UUIDs), each embedded in a short sentence.

A positive is found when a redaction span of an accepted kind covers the whole value (tokens: any of the
credential kinds). A negative is a false alarm when any span overlaps it. Precision counts false alarms
against hits; time is per 1,000 characters through ``redact_text`` with every detector on.

OCR: synthetic 1920x1080 screens rendered with Pillow (DejaVu Sans, black on white, in two "windows"
on a grey desktop; no X server needed): ordinary sentences with sensitive values (cards, emails, IBANs,
API keys) among them. A session of frames adds one line per frame, as typing would. Each frame is
scrubbed twice: whole (``scrub_frame`` with no previous frame) and incrementally (``ScreenScrubber``:
only what changed is read), by each path in the same run: the old one (a ``tesseract`` process per
strip of the changed bands), the same bands through a loaded Tesseract, and the line reader without
and with its cache. Reported per path, mode, OCR upscale and font size: CPU ms per frame (this process
and its tesseract children) and its ratio to the old path, share of the screen read, share of
sensitive words fully covered, share of ordinary words blacked out.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from demotrace.geometry import Box
from demotrace.redact.detectors.iban import IBAN_LENGTHS, mod97_valid
from demotrace.redact.detectors.payment_card import luhn_valid
from demotrace.redact.detectors.us_ssn import ssn_issuable
from demotrace.redact.ocr import OcrSettings
from demotrace.redact.scrubber import ScreenScrubber, scrub_frame
from demotrace.redact.text import redact_text

SENTENCES = (
    "Please use {} for the order.",
    "ok, it's {} — let me know",
    "My details: {}",
    "{} is what they gave me yesterday",
    "Can you check {} again?",
    "copied from the form: {}. thanks",
)
WORDS = [
    *("account", "report", "meeting", "invoice", "customer", "project", "schedule", "payment", "review"),
    *("budget", "weekly", "summary", "transfer", "contract", "update", "planning", "international"),
    *("development", "engineering", "administration", "documentation", "configuration", "notification"),
]
CREDENTIAL_KINDS = frozenset({"API_KEY", "JWT", "PRIVATE_KEY", "SECRET"})


@dataclass(frozen=True)
class Sample:
    value: str
    positive: bool


Generator = Callable[[random.Random], str]


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def luhn_complete(body: str) -> str:
    """Append the check digit that makes ``body`` pass Luhn."""
    return next(body + d for d in string.digits if luhn_valid(body + d))


# (issuer prefix, length): Visa, Mastercard, Amex, Discover, JCB, UnionPay, Diners.
CARD_PREFIXES: tuple[tuple[str, int], ...] = (
    *(("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15)),
    *(("6011", 16), ("65", 16), ("3530", 16), ("62", 18), ("36", 14)),
)


def group_card(number: str, rng: random.Random) -> str:
    separator = rng.choice(["", " ", "-"])
    if not separator:
        return number
    if len(number) == 15:
        parts = [number[:4], number[4:10], number[10:]]
    else:
        parts = [number[i : i + 4] for i in range(0, len(number), 4)]
    return separator.join(parts)


def card(rng: random.Random, valid: bool) -> str:
    prefix, length = rng.choice(CARD_PREFIXES)
    number = luhn_complete(prefix + digits(rng, length - len(prefix) - 1))
    if not valid:
        last = int(number[-1])
        number = number[:-1] + str((last + rng.randint(1, 9)) % 10)
    return group_card(number, rng)


def ssn(rng: random.Random, valid: bool) -> str:
    while True:
        area = rng.randint(1, 899) if valid else rng.choice([0, 666, rng.randint(900, 999)])
        number = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if ssn_issuable(number) == valid:
            separator = rng.choice(["-", " "])
            return separator.join([number[:3], number[3:5], number[5:]])


IBAN_COUNTRIES = ("DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "PL", "NO", "SE", "AT")


def iban(rng: random.Random, valid: bool) -> str:
    country = rng.choice(IBAN_COUNTRIES)
    length = IBAN_LENGTHS[country]
    bban = digits(rng, length - 4)
    if country in ("GB", "NL"):  # these start with a four-letter bank code
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + bban[4:]
    check = next(f"{c:02d}" for c in range(2, 99) if mod97_valid(f"{country}{c:02d}{bban}"))
    if not valid:
        check = next(
            f"{c:02d}" for c in rng.sample(range(2, 99), 97) if not mod97_valid(f"{country}{c:02d}{bban}")
        )
    compact = f"{country}{check}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def email(rng: random.Random, valid: bool) -> str:
    user = rng.choice(["john", "a.smith", "maria_k", "ops-team", "li.wei"]) + rng.choice(["", "42", "+news"])
    domain = rng.choice(["example", "corp-mail", "uni", "acme"])
    tld = rng.choice(["com", "org", "co.uk", "io", "de"])
    if valid:
        return f"{user}@{domain}.{tld}"
    return rng.choice([f"{user} at {domain}.{tld}", f"{user}@{domain}", f"{user}@{domain}.c", f"@{domain}"])


US_AREAS = ("212", "415", "617", "202", "312", "646", "503", "206", "713", "305")


def phone(rng: random.Random, valid: bool) -> str:
    if valid:
        area, exchange, line = rng.choice(US_AREAS), str(rng.randint(200, 999)), digits(rng, 4)
        return rng.choice(
            [
                f"({area}) {exchange}-{line}",
                f"{area}-{exchange}-{line}",
                f"+1 {area} {exchange} {line}",
                f"{area}.{exchange}.{line}",
                f"+44 20 7{digits(rng, 3)} {digits(rng, 4)}",
                f"+49 30 {digits(rng, 8)}",
            ]
        )
    return rng.choice(
        [
            f"{digits(rng, 3)}-{digits(rng, 2)}",  # too short
            f"(1{digits(rng, 2)}) {rng.randint(200, 999)}-{digits(rng, 4)}",  # area codes never start with 1
            f"(0{digits(rng, 2)}) {rng.randint(200, 999)}-{digits(rng, 4)}",  # nor with 0
            f"{rng.randint(200, 999)}-{digits(rng, 4)}",  # seven digits, no area code
        ]
    )


def random_text(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


ALNUM = string.ascii_letters + string.digits
BASE64URL = ALNUM + "-_"


def token(rng: random.Random, valid: bool) -> str:
    if valid:
        credentials: list[Callable[[], str]] = [
            lambda: "AKIA" + random_text(rng, string.ascii_uppercase + string.digits, 16),
            lambda: "ghp_" + random_text(rng, ALNUM, 36),
            lambda: "xoxb-" + digits(rng, 11) + "-" + digits(rng, 12) + "-" + random_text(rng, ALNUM, 24),
            lambda: "sk_live_" + random_text(rng, ALNUM, 24),
            lambda: "AIza" + random_text(rng, BASE64URL, 35),
            lambda: "sk-proj-" + random_text(rng, BASE64URL, 48),
            lambda: (
                "eyJhbGciOiJIUzI1NiJ9.eyJ"
                + random_text(rng, BASE64URL, 40)
                + "."
                + random_text(rng, BASE64URL, 43)
            ),
            lambda: (
                "-----BEGIN PRIVATE KEY-----\n"
                + random_text(rng, ALNUM + "+/", 64)
                + "\n-----END PRIVATE KEY-----"
            ),
            lambda: random_text(rng, ALNUM, rng.randint(20, 40)),  # a password or unlabelled key
            lambda: random_text(rng, "0123456789abcdef", rng.choice([32, 40, 64])),
        ]
        return rng.choice(credentials)()
    look_alikes: list[Callable[[], str]] = [
        lambda: "".join(rng.sample(WORDS, 3)),
        lambda: "_".join(rng.sample(WORDS, 3)) + f"_{rng.randint(2019, 2025)}",
        lambda: rng.choice(WORDS) + "".join(w.title() for w in rng.sample(WORDS, 2)),
        lambda: "/home/" + rng.choice(["alice", "bob"]) + "/" + "/".join(rng.sample(WORDS, 2)) + ".pdf",
        lambda: "src/" + "/".join(rng.sample(WORDS, 2)) + f"/module{rng.randint(1, 9)}.py",
        lambda: f"IMG_{rng.randint(20190101, 20251231)}_{digits(rng, 6)}.jpg",
        lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        lambda: rng.choice(WORDS) * 2,
    ]
    return rng.choice(look_alikes)()


@dataclass(frozen=True)
class TypeSpec:
    name: str
    generate: Callable[[random.Random, bool], str]
    accepted_kinds: frozenset[str]


TYPES = (
    TypeSpec("CREDIT_CARD", card, frozenset({"CREDIT_CARD"})),
    TypeSpec("US_SSN", ssn, frozenset({"US_SSN"})),
    TypeSpec("IBAN", iban, frozenset({"IBAN"})),
    TypeSpec("EMAIL", email, frozenset({"EMAIL"})),
    TypeSpec("PHONE", phone, frozenset({"PHONE"})),
    TypeSpec("TOKEN", token, CREDENTIAL_KINDS),
)


@dataclass
class Score:
    true_positives: int = 0
    false_negatives: int = 0
    false_positives: int = 0
    true_negatives: int = 0
    chars: int = 0
    seconds: float = 0.0

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 1.0


def score_type(spec: TypeSpec, rng: random.Random, per_type: int) -> tuple[Score, list[str]]:
    score = Score()
    misses: list[str] = []
    for positive in [True] * per_type + [False] * per_type:
        value = spec.generate(rng, positive)
        template = rng.choice(SENTENCES)
        sentence = template.format(value)
        value_start = template.index("{}")
        value_end = value_start + len(value)
        started = time.perf_counter()
        matches = redact_text(sentence).matches
        score.seconds += time.perf_counter() - started
        score.chars += len(sentence)
        overlapping = [m for m in matches if m.start < value_end and m.end > value_start]
        if positive:
            covered = any(
                m.kind in spec.accepted_kinds and m.start <= value_start and m.end >= value_end
                for m in matches
            )
            if covered:
                score.true_positives += 1
            else:
                score.false_negatives += 1
                misses.append(f"missed {value!r}")
        elif overlapping:
            score.false_positives += 1
            misses.append(f"false alarm {value!r} as {[m.kind for m in overlapping]}")
        else:
            score.true_negatives += 1
    return score, misses


# --- screen (OCR) redaction ------------------------------------------------------------------------------

SCREEN_SIZE = (1920, 1080)
WINDOWS = (Box(40, 40, 940, 1040), Box(980, 40, 1880, 1040))
OCR_FONT_FILE = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass(frozen=True)
class ScreenLine:
    """One line of text in a window: its words and whether each one is sensitive."""

    window: int
    words: tuple[tuple[str, bool], ...]


def screen_line(rng: random.Random, window: int) -> ScreenLine:
    """An ordinary sentence, or (one in three) one with a sensitive value in it."""
    ordinary = [(word, False) for word in rng.sample(WORDS, 4)]
    if rng.random() < 2 / 3:
        return ScreenLine(window, tuple(ordinary))
    kind = rng.choice(["card", "email", "iban", "key"])
    if kind == "card":
        value = card(rng, True)
    elif kind == "email":
        value = email(rng, True)
    elif kind == "iban":
        value = iban(rng, True)
    else:
        value = "AKIA" + random_text(rng, string.ascii_uppercase + string.digits, 16)
    secret = [(part, True) for part in value.split(" ")]
    return ScreenLine(window, tuple(ordinary[:2] + secret + ordinary[2:]))


@dataclass(frozen=True)
class Ink:
    box: Box
    sensitive: bool


def render_screen(lines: list[ScreenLine], font_px: int) -> tuple[Any, list[Ink]]:
    """The screen with these lines (filled top-down in each window), and every word's ink box."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(OCR_FONT_FILE, font_px)
    image = Image.new("RGB", SCREEN_SIZE, (90, 100, 110))
    draw = ImageDraw.Draw(image)
    for window in WINDOWS:
        draw.rectangle((window.left, window.top, window.right - 1, window.bottom - 1), fill="white")
    pitch = round(font_px * 1.8)
    rows = [0] * len(WINDOWS)
    inks: list[Ink] = []
    for line in lines:
        window = WINDOWS[line.window]
        y = window.top + 12 + rows[line.window] * pitch
        rows[line.window] += 1
        x = float(window.left + 12)
        for text, sensitive in line.words:
            draw.text((x, y), text, fill="black", font=font)
            left, top, right, bottom = draw.textbbox((x, y), text, font=font)
            inks.append(Ink(Box(int(left), int(top), int(right), int(bottom)), sensitive))
            x += draw.textlength(text + " ", font=font)
    return image, inks


def fully_covered(boxes: list[Box], ink: Box) -> bool:
    import numpy as np

    mask = np.zeros((ink.height, ink.width), dtype=bool)
    for box in boxes:
        if box.intersects(ink):
            mask[
                max(0, box.top - ink.top) : box.bottom - ink.top,
                max(0, box.left - ink.left) : box.right - ink.left,
            ] = True
    return bool(mask.all())


@dataclass
class OcrScore:
    frames: int = 0
    cpu_seconds: float = 0.0
    area_read: float = 0.0
    sensitive: int = 0
    sensitive_covered: int = 0
    ordinary: int = 0
    ordinary_hit: int = 0

    def add(self, cpu_seconds: float, regions: list[Box], boxes: list[Box], inks: list[Ink]) -> None:
        self.frames += 1
        self.cpu_seconds += cpu_seconds
        self.area_read += sum(region.area for region in regions) / (SCREEN_SIZE[0] * SCREEN_SIZE[1])
        for ink in inks:
            if ink.sensitive:
                self.sensitive += 1
                self.sensitive_covered += fully_covered(boxes, ink.box)
            else:
                self.ordinary += 1
                self.ordinary_hit += any(box.intersects(ink.box) for box in boxes)


def ocr_session(rng: random.Random, frames: int, first_lines: int) -> list[list[ScreenLine]]:
    """Frame i shows the first ``first_lines + i`` lines: one new line per frame."""
    lines = [screen_line(rng, index % 2) for index in range(first_lines + frames)]
    return [lines[: first_lines + index] for index in range(frames)]


def cpu_now() -> float:
    """CPU seconds of this process and of the children it waited for (``tesseract`` runs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# The paths compared: the first design (a ``tesseract`` process per strip of every changed band), the
# same bands read by a loaded Tesseract, and the line reader (only changed lines, each distinct line
# once) without and with its cache.
OCR_PATHS = (
    ("old: CLI, bands", OcrSettings(engine="cli", reader="bands")),
    ("loaded, bands", OcrSettings(engine="api", reader="bands")),
    ("lines, no cache", OcrSettings(reader="lines", line_cache_entries=0)),
    ("new: lines", OcrSettings(reader="lines")),
)


def ocr_bench(seed: int, frames: int, scales: list[int], font_sizes: list[int]) -> None:
    print(
        f"\nOCR redaction, synthetic {SCREEN_SIZE[0]}x{SCREEN_SIZE[1]} screens (Pillow, DejaVu Sans), "
        f"{frames} frames, one new line each; CPU of this process and its tesseract children"
    )
    print(
        f"{'path':<16} {'mode':<12} {'scale':>5} {'font px':>7} {'ms/frame':>9} {'read %':>7} "
        f"{'secret words':>12} {'covered %':>9} {'ordinary hit %':>14}"
    )
    old_ms: dict[tuple[str, int, int], float] = {}
    for font_px in font_sizes:
        session = ocr_session(random.Random(seed), frames, first_lines=24)
        rendered = [render_screen(lines, font_px) for lines in session]
        for scale in scales:
            for name, base in OCR_PATHS:
                settings = dataclasses.replace(base, scale=scale)
                full, incremental = OcrScore(), OcrScore()
                scrubber = ScreenScrubber(settings=settings)
                for index, (image, inks) in enumerate(rendered):
                    started = cpu_now()
                    whole = scrub_frame(image, settings=settings)
                    full.add(cpu_now() - started, whole.regions, whole.boxes, inks)
                    started = cpu_now()
                    changed = scrubber.scrub(image)
                    if index > 0:  # the first frame has no previous one: it is read whole
                        incremental.add(cpu_now() - started, changed.regions, changed.boxes, inks)
                for mode, score in (("full frame", full), ("changed only", incremental)):
                    ms = 1000 * score.cpu_seconds / score.frames
                    old_ms.setdefault((mode, scale, font_px), ms)
                    ratio = ms / old_ms[(mode, scale, font_px)]
                    print(
                        f"{name:<16} {mode:<12} {scale:>5} {font_px:>7} {ms:>9.1f} "
                        f"{100 * score.area_read / score.frames:>7.1f} {score.sensitive:>12} "
                        f"{100 * score.sensitive_covered / max(1, score.sensitive):>9.1f} "
                        f"{100 * score.ordinary_hit / max(1, score.ordinary):>14.2f}"
                        f"   x{ratio:.3f} of old"
                    )
    print("(changed only: frames 2 onwards; the first has no previous frame and is read whole)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--per-type", type=int, default=1000, help="positives (and as many negatives) per type"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--show-errors", type=int, default=3, help="print this many errors per type")
    parser.add_argument("--ocr", action="store_true", help="also measure screen (OCR) redaction")
    parser.add_argument("--ocr-only", action="store_true", help="only measure screen (OCR) redaction")
    parser.add_argument("--ocr-frames", type=int, default=6, help="frames per OCR session")
    parser.add_argument("--ocr-scales", default="1,2", help="OCR upscale factors to compare")
    parser.add_argument("--ocr-font-px", default="12,16", help="font sizes of the synthetic screens")
    args = parser.parse_args()

    if args.ocr or args.ocr_only:
        scales = [int(value) for value in args.ocr_scales.split(",")]
        font_sizes = [int(value) for value in args.ocr_font_px.split(",")]
    if args.ocr_only:
        ocr_bench(args.seed, args.ocr_frames, scales, font_sizes)
        return
    rng = random.Random(args.seed)
    print(
        f"{'type':<12} {'pos':>5} {'neg':>5} {'TP':>5} {'FN':>4} {'FP':>4} "
        f"{'precision':>9} {'recall':>7} {'ms/1k chars':>11}"
    )
    total = Score()
    all_errors: list[tuple[str, str]] = []
    for spec in TYPES:
        score, errors = score_type(spec, rng, args.per_type)
        all_errors.extend((spec.name, error) for error in errors[: args.show_errors])
        per_k = score.seconds / score.chars * 1000 * 1000
        print(
            f"{spec.name:<12} {args.per_type:>5} {args.per_type:>5} {score.true_positives:>5} "
            f"{score.false_negatives:>4} {score.false_positives:>4} "
            f"{score.precision:>9.3f} {score.recall:>7.3f} {per_k:>11.3f}"
        )
        for field_name in ("true_positives", "false_negatives", "false_positives", "true_negatives", "chars"):
            setattr(total, field_name, getattr(total, field_name) + getattr(score, field_name))
        total.seconds += score.seconds
    print(
        f"{'all':<12} {'':>5} {'':>5} {total.true_positives:>5} {total.false_negatives:>4} "
        f"{total.false_positives:>4} {total.precision:>9.3f} {total.recall:>7.3f} "
        f"{total.seconds / total.chars * 1e6:>11.3f}"
    )
    for name, error in all_errors:
        print(f"  {name}: {error}")
    if args.ocr:
        ocr_bench(args.seed, args.ocr_frames, scales, font_sizes)


if __name__ == "__main__":
    main()
