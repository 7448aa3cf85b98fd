"""Privacy acceptance: sensitive values typed and shown on a real X server never reach any stored place.

One scenario, recorded once for the whole module, with every piece real and as in the field: Xvfb +
openbox, the Tk demo form and an xterm, the collector (``demotrace server``) and the recorder
(``demotrace record --server``) as separate processes, human-paced XTEST input, and a small recording
reverse proxy between the recorder and the collector that keeps every request body it forwards.

The person types one value of each sensitive type into the form (name, email, notes), echoes each in
the xterm (so the terminal shows it twice), and types a password into the form's sign-in window; then
clicks around, so frames are grabbed while everything is on screen. The tests then look for every value,
in several normalised forms (as typed, lower-case, without separators, digits only, and any run of half
the value or more, at least 10 characters), in each place data lands: the decrypted spool, the upload
request bodies, the collector's database and blobs, the built dataset, and the logs. Text is searched
exactly; images are read with Tesseract (also with their black boxes painted white, which Tesseract
otherwise lets spoil the text beside them) and searched leniently (look-alikes, a few slips on long runs).

Positive checks keep it honest: the form really holds the values, the dataset's type steps carry the
placeholders (``<CREDIT_CARD>``, ``<PASSWORD>`` ...), every step has its frame, and OCR of the frames
reads ordinary words that were on screen next to the values (field labels, a harmless canary phrase
typed in the same places), so a clean result is not an unreadable one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import pytest
import zstandard
from PIL import Image, ImageFilter, UnidentifiedImageError

from demotrace.model import Batch, Frame, FrameTaken, Key, Marker, Record, Window, decode_record
from demotrace.protocol import STOP_MARKER_KIND
from demotrace.redact.text import placeholder, redact_text

pytestmark = [pytest.mark.x11, pytest.mark.timeout(900)]

# ----- the sensitive values -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sensitive:
    kind: str  # the detector kind whose placeholder replaces it ("CREDIT_CARD")
    value: str  # as typed


def _base64url_json(value: dict[str, str]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Made-up values of the right shape (checked by the detectors in test_values_are_what_the_detectors_catch).
CARD = Sensitive("CREDIT_CARD", "4929 5308 1746 2217")  # Luhn-valid Visa
SSN = Sensitive("US_SSN", "536-22-8147")
IBAN = Sensitive("IBAN", "GB82 WEST 1234 5698 7654 32")
EMAIL = Sensitive("EMAIL", "rowena.okafor@example.net")
PHONE = Sensitive("PHONE", "+1 415-555-0132")
API_KEY = Sensitive("API_KEY", "ghp_R7k2Qm9Xv4Lp8Zt3Wn6Yb1Hc5Jd0Fs2Ga7Ex")
JWT = Sensitive(
    "JWT", f"{_base64url_json({'alg': 'HS256'})}.{_base64url_json({'sub': '7731'})}.Qm3vT8xKd2LpW9sZr4NfY7"
)
PASSWORD = Sensitive("PASSWORD", "Sunflower-Quartz-42")  # no detector sees it: only the window title does
SIGN_IN_USER = "pat.quinn"  # typed in the sign-in window too, so it is part of the password burst

DETECTED = (CARD, SSN, IBAN, EMAIL, PHONE, API_KEY, JWT)
EVERY_VALUE = (*DETECTED, PASSWORD)
NOTES_VALUES = (SSN, IBAN, PHONE, API_KEY, JWT)  # the name and email fields take CARD and EMAIL

# Harmless words typed next to the values: OCR must read them, or a clean OCR result proves nothing.
CANARY_WORDS = ("lighthouse", "canary")
CANARY = " ".join(CANARY_WORDS)
FORM_LABELS = ("Name", "Email", "Notes")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _compact(text: str) -> str:
    """Lower case, letters and digits only: separators, spaces and punctuation are gone."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


Haystack = Literal["text", "lower", "compact"]


@dataclass(frozen=True)
class Form:
    name: str  # "as typed", "lower-case", "without separators", "digits only", "a 10-character fragment"
    needle: str
    haystack: Haystack  # searched in the text as it is, lower-cased, or compacted like the needle


def fragment_length(compact_value: str) -> int:
    """Fragments this long or longer count as showing the value: half of it, and never fewer than 10
    characters (shorter runs, like a card's last four digits, are shown on purpose and could be chance)."""
    return max(10, -(-len(compact_value) // 2))


def search_forms(value: str) -> list[Form]:
    """The forms a leaked value could take: as typed, lower-case, without separators, digits only (for
    values that are mostly digits: cards, SSNs, phones, IBANs), and any run of half of it or more."""
    compact = _compact(value)
    forms = [
        Form("as typed", value, "text"),
        Form("lower-case", value.lower(), "lower"),
        Form("without separators", compact, "compact"),
    ]
    digits = _digits(value)
    if len(digits) >= 9 and len(digits) * 2 >= len(compact):
        forms.append(Form("digits only", digits, "compact"))
    length = fragment_length(compact)
    for start in range(len(compact) - length + 1):
        piece = compact[start : start + length]
        forms.append(Form(f"a {length}-character fragment", piece, "compact"))
    return forms


# ----- searching text and bytes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    value: Sensitive
    form: str
    where: str

    def __str__(self) -> str:
        return f"{self.value.kind} ({self.form}) in {self.where}"


def leaks_in_text(text: str, where: str, values: Iterable[Sensitive] = EVERY_VALUE) -> list[Leak]:
    haystacks: dict[Haystack, str] = {"text": text, "lower": text.lower(), "compact": _compact(text)}
    return [
        Leak(value, form.name, where)
        for value in values
        for form in search_forms(value.value)
        if form.needle in haystacks[form.haystack]
    ]


def leaks_in_bytes(data: bytes, where: str, values: Iterable[Sensitive] = EVERY_VALUE) -> list[Leak]:
    """Raw bytes, searched as Latin-1 text: every byte is one character, so UTF-8 needles still match."""
    return leaks_in_text(data.decode("latin-1"), where, values)


# ----- OCR, leniently ------------------------------------------------------------------------------

# Characters OCR confuses in these fonts, folded to one on both sides before a lenient comparison.
_OCR_LOOKALIKES = str.maketrans("odqilj|!zs$bg?", "00011111255897")


def ocr_folded(text: str) -> str:
    """Lower case, look-alikes folded, letters and digits only."""
    return _compact(text.lower().translate(_OCR_LOOKALIKES))


def allowed_edits(needle: str) -> int:
    """Edits OCR may make in a value and still count as showing it: none on short ones (a near miss of
    a nine-digit number could be chance), about one character in six on long tokens (X's small fonts
    lose a character here and there; a random line is nowhere near that close to a 20+ character value)."""
    if len(needle) >= 20:
        return max(2, len(needle) // 6)
    return 1 if len(needle) >= 12 else 0


def within_edits(needle: str, haystack: str, edits: int) -> bool:
    """Does ``haystack`` hold a substring at most ``edits`` edits (Levenshtein) from ``needle``?"""
    if edits == 0:
        return needle in haystack
    # Pigeonhole: with k edits, one of k+1 pieces of the needle appears unchanged. Cheap filter first.
    size = len(needle) // (edits + 1)
    pieces = [needle[i * size : (i + 1) * size] for i in range(edits + 1)]
    if not any(piece in haystack for piece in pieces):
        return False
    # Sellers' algorithm: edit distance of the needle to the best-matching substring ending at each column.
    column = list(range(len(needle) + 1))
    for char in haystack:
        previous_diagonal, column[0] = column[0], 0
        for row in range(1, len(needle) + 1):
            substitution = previous_diagonal + (needle[row - 1] != char)
            previous_diagonal = column[row]
            column[row] = min(substitution, column[row] + 1, column[row - 1] + 1)
        if column[-1] <= edits:
            return True
    return False


@dataclass(frozen=True)
class ScreenText:
    """What OCR read in one image: its text lines, left to right."""

    lines: tuple[str, ...]

    def words(self) -> set[str]:
        return {word.strip(".,:;'\"()[]<>|").lower() for line in self.lines for word in line.split()}


def ocr_leaks(text: ScreenText, where: str, values: Iterable[Sensitive] = EVERY_VALUE) -> list[Leak]:
    """Every value OCR read in the image: exactly anywhere in its text, or leniently within one of its
    lines (look-alikes folded on both sides; a few slips allowed on long values and fragments)."""
    found = leaks_in_text("\n".join(text.lines), where, values)
    folded_lines = [ocr_folded(line) for line in text.lines]
    for value in values:
        if any(leak.value == value for leak in found):
            continue
        for form in search_forms(value.value):
            if form.haystack != "compact":
                continue
            needle = ocr_folded(form.needle)
            edits = allowed_edits(needle)
            if any(within_edits(needle, line, edits) for line in folded_lines):
                found.append(Leak(value, f"{form.name}, OCR read with up to {edits} slips", where))
                break
    return found


def assert_no_screen_leaks(leaks: list[Leak], images: int) -> None:
    """No value, of any kind, is readable in any image."""
    assert not leaks, _report(leaks, images)


def image_key(image: Image.Image) -> str:
    """Same pixels, same key: a frame seen in the spool, the upload and the dataset is read once."""
    digest = hashlib.sha256(image.mode.encode() + repr(image.size).encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


BOX_CORE_PX = 7  # solid black this wide all round is a box (or the bare root window), not a glyph stroke


def without_black_boxes(image: Image.Image) -> Image.Image:
    """The image in grey, with solid black areas (redaction boxes) painted white, edges included."""
    grey = image.convert("L")
    black = grey.point(lambda level: 255 if level < 16 else 0)
    boxes = black.filter(ImageFilter.MinFilter(BOX_CORE_PX)).filter(ImageFilter.MaxFilter(BOX_CORE_PX + 2))
    return Image.composite(Image.new("L", grey.size, 255), grey, boxes)


class OcrCache:
    """Tesseract over each distinct image once, a few at a time (each run is one process)."""

    def __init__(self) -> None:
        self._texts: dict[str, ScreenText] = {}
        self._lock = threading.Lock()

    def _read(self, image: Image.Image) -> ScreenText:
        """Three readings, their lines together: the frame as it is (sparse text), and with its solid
        black boxes painted white, sparse and as a page. Tesseract misreads text next to big black
        boxes (its thresholding suffers): a redacted frame read only as it is hides what the boxes missed."""
        from demotrace.redact.lines import group_lines
        from demotrace.redact.ocr import OcrSettings, ocr_words

        unboxed = without_black_boxes(image)
        readings = [
            ocr_words(image),
            ocr_words(unboxed),
            ocr_words(unboxed, settings=OcrSettings(page_segmentation=3)),
        ]
        return ScreenText(
            tuple(" ".join(word.text for word in line) for words in readings for line in group_lines(words))
        )

    def read_all(self, images: dict[str, Image.Image]) -> dict[str, ScreenText]:
        """OCR of each image, by the caller's name for it."""
        keys = {name: image_key(image) for name, image in images.items()}
        missing: dict[str, Image.Image] = {}
        with self._lock:
            for name, key in keys.items():
                if key not in self._texts:
                    missing.setdefault(key, images[name])
        workers = max(1, min(len(missing), os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            texts = dict(zip(missing, pool.map(self._read, missing.values()), strict=True))
        with self._lock:
            self._texts.update(texts)
            return {name: self._texts[key] for name, key in keys.items()}


# ----- decoding records ------------------------------------------------------------------------------


def typed_text(batches: Iterable[Batch]) -> str:
    """Every character typed, in order (key presses with a character), as one string."""
    keys = sorted(
        (event for batch in batches for event in batch.events if isinstance(event, Key)),
        key=lambda key: key.t,
    )
    return "".join(("\n" if key.char == "\r" else key.char) for key in keys if key.down and key.char)


def records_text(records: Iterable[Record]) -> str:
    """What a reader of these records would see as text: typed characters joined, every window title
    and marker text, and every event as JSON (frame pixels excluded: those are read by OCR)."""
    batches = [record for record in records if isinstance(record, Batch)]
    parts = [typed_text(batches)]
    for batch in batches:
        for event in batch.events:
            if isinstance(event, Window):
                parts.append(event.title)
            elif isinstance(event, Marker):
                parts.append(event.text)
        parts.append(msgspec.json.encode(batch).decode())
    return "\n".join(parts)


def frame_images(frames: dict[str, Frame], where: str) -> dict[str, Image.Image]:
    """Every frame as a whole image (delta frames rebuilt from their chain), named by where it is."""
    from demotrace.frames.resolver import FrameResolver

    resolver = FrameResolver(frames.get)
    images: dict[str, Image.Image] = {}
    for frame_id in frames:
        image = resolver.image(frame_id)
        assert image is not None, f"frame {frame_id} in {where} cannot be rebuilt as an image"
        images[f"{where}: frame {frame_id}"] = image.copy()
    return images


def decode_blob(data: bytes) -> Record | None:
    """A zstd-compressed MessagePack record (an upload body, a collector blob), or None if it is not one."""
    try:
        return decode_record(zstandard.ZstdDecompressor().decompress(data))
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def zstd_plain(data: bytes) -> bytes | None:
    try:
        plain: bytes = zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError:
        return None
    return plain


# ----- the recording proxy ---------------------------------------------------------------------------

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "host", "content-length",
                         "content-encoding"})  # fmt: skip


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_body: bytes


@dataclass
class RecordingProxy:
    """A reverse proxy on 127.0.0.1 that forwards every request to ``upstream`` and keeps a copy of it."""

    upstream: str
    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _client: httpx.Client | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingProxy:
        client = self._client = httpx.Client(base_url=self.upstream, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the uploader's client expects

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                    status, content = answer.status_code, answer.content
                    answer_headers = [
                        (k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP
                    ]
                except httpx.HTTPError as error:
                    status, content, answer_headers = 502, str(error).encode(), []
                with proxy._lock:
                    proxy.exchanges.append(
                        Exchange(self.command, self.path, dict(headers), body, status, content)
                    )
                self.send_response(status)
                for name, value in answer_headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the exchanges are the record; nothing on the test's stderr

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        assert client is not None
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._client is not None:
            self._client.close()

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)


_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")


def uploaded_records(exchanges: Iterable[Exchange]) -> list[Record]:
    """The records the uploader sent: whole PUTs, and resumable uploads reassembled from their chunks."""
    records: list[Record] = []
    chunks: dict[str, dict[int, bytes]] = {}
    totals: dict[str, int] = {}
    for exchange in exchanges:
        if exchange.method == "PUT" and exchange.path.startswith("/v1/records/"):
            record = decode_blob(exchange.request_body)
            assert record is not None, f"upload body of {exchange.path} is not a zstd record"
            records.append(record)
        elif exchange.method == "PUT" and exchange.path.startswith("/v1/uploads/"):
            match = _CONTENT_RANGE.fullmatch(exchange.request_headers.get("Content-Range", ""))
            assert match is not None, f"resumable chunk without a Content-Range: {exchange.path}"
            totals[exchange.path] = int(match.group(3))
            if match.group(1) is not None:
                chunks.setdefault(exchange.path, {})[int(match.group(1))] = exchange.request_body
    for path, total in totals.items():
        body = bytearray(total)
        for offset, chunk in chunks.get(path, {}).items():
            body[offset : offset + len(chunk)] = chunk
        record = decode_blob(bytes(body))
        if record is not None:  # an upload cut short and restarted: its complete run is decoded too
            records.append(record)
    return records


# ----- the scenario ----------------------------------------------------------------------------------


@dataclass
class Scenario:
    root: Path
    spool: Path
    key: Path
    collector: Path
    dataset: Path
    app_state: dict[str, Any]
    exchanges: list[Exchange]
    recorder_exit: int
    recorder_log: list[str]
    collector_log: list[str]
    build_log: list[str]
    ocr: OcrCache


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _drive(display: str, state_file: Path) -> None:
    """What the person does: type every value in the form and the xterm, a password in the sign-in
    window, then click around so frames are grabbed while everything is on screen."""
    from demotrace.demo.script import TERMINAL_CLASS, find_window, read_app_state
    from demotrace.demo.xdriver import XDriver

    def box(name: str) -> tuple[int, int]:
        entry = read_app_state(state_file)["layout"][name]
        return entry["x"] + entry["width"] // 2, entry["y"] + entry["height"] // 2

    with XDriver(display, seed=14) as driver:
        driver.click(*box("name"))
        driver.type_text(CARD.value)
        driver.click(*box("email"))
        driver.type_text(EMAIL.value)
        driver.click(*box("notes"))
        driver.type_text("\n".join([f"Meeting notes {CANARY}", *(value.value for value in NOTES_VALUES)]))

        terminal = find_window(display, TERMINAL_CLASS)
        assert terminal is not None, "the demo xterm is not on screen"
        driver.click(terminal.x + terminal.width // 2, terminal.y + terminal.height - 40)
        driver.type_text("".join(f"echo {text}\n" for text in (CANARY, *(value.value for value in DETECTED))))

        driver.click(*box("sign_in"))
        _wait_for(
            lambda: "sign_in_password" in read_app_state(state_file).get("layout", {}), "the sign-in window"
        )
        driver.click(*box("sign_in_user"))
        driver.type_text(SIGN_IN_USER)
        driver.click(*box("sign_in_password"))
        driver.type_text(PASSWORD.value)

        # Everything is on screen now: each click grabs a frame showing it.
        driver.click(*box("status"))
        driver.click(terminal.x + terminal.width // 2, terminal.y + 20)
        driver.click(*box("list"))
        driver.click(*box("status"))
        driver.click(*box("sign_in_submit"))
        driver.click(*box("status"))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from demotrace.collector.reader import CollectorReader
    from demotrace.dataset.build import build_dataset
    from demotrace.demo.desktop import VirtualDesktop, missing_programs
    from demotrace.demo.run import (
        RECORDER_SETTLE_SECONDS,
        demo_fleet_policy,
        free_port,
        start_collector_with_policy,
        start_recorder,
        stop_process,
    )
    from demotrace.demo.script import read_app_state, start_demo_apps
    from demotrace.frames.resolver import resolving_loader

    missing = missing_programs()
    if missing:
        pytest.fail(f"X tests need {missing}: run scripts/setup.sh")
    if shutil.which("tesseract") is None:
        pytest.fail("the privacy suite reads frames with Tesseract: apt install tesseract-ocr")
    root = tmp_path_factory.mktemp("privacy")
    # The app's state file holds what was typed (it is the test's ground truth): keep it out of every
    # folder searched below.
    private = root / "test-only"
    private.mkdir()
    state_file = private / "app-state.json"
    spool, key, credentials = root / "spool", root / "spool.key", root / "device.json"
    collector_data, dataset = root / "collector", root / "dataset"

    with pytest.MonkeyPatch.context() as patch, VirtualDesktop() as desktop:
        # The xterm's shell must not write the echoed values to the real ~/.bash_history.
        patch.setenv("HISTFILE", str(private / "bash_history"))
        apps = start_demo_apps(desktop, state_file)
        collector, collector_output, collector_url = start_collector_with_policy(
            collector_data, free_port(), demo_fleet_policy()
        )
        proxy = RecordingProxy(collector_url).start()
        try:
            recorder, recorder_output = start_recorder(
                desktop.display, spool, key, credentials, proxy.url, accept_notice=True
            )
            try:
                _drive(desktop.display, state_file)
                # Let the recorder's RECORD connection deliver the last release before stopping it.
                time.sleep(RECORDER_SETTLE_SECONDS)
            finally:
                recorder_exit = stop_process(recorder)
            app_state = read_app_state(state_file)
            build_lines = _Lines()
            logging.getLogger().addHandler(build_lines)
            try:
                with_frames = CollectorReader(collector_data)
                build_dataset(
                    CollectorReader(collector_data).iter_batches(),
                    resolving_loader(with_frames.load_frame),
                    dataset,
                )
            finally:
                logging.getLogger().removeHandler(build_lines)
        finally:
            proxy.stop()
            stop_process(collector)
            apps.stop()
    yield Scenario(
        root=root,
        spool=spool,
        key=key,
        collector=collector_data,
        dataset=dataset,
        app_state=app_state,
        exchanges=proxy.snapshot(),
        recorder_exit=recorder_exit,
        recorder_log=list(recorder_output.lines),
        collector_log=list(collector_output.lines),
        build_log=build_lines.lines,
        ocr=OcrCache(),
    )


def _report(leaks: list[Leak], places: int | None = None) -> str:
    """One line per leaked value: in how many places, in which forms, and one place to look at."""
    by_kind: dict[str, list[Leak]] = {}
    for leak in leaks:
        by_kind.setdefault(leak.value.kind, []).append(leak)
    lines = []
    for kind, found in sorted(by_kind.items()):
        wheres = sorted({leak.where for leak in found})
        forms = ", ".join(sorted({leak.form for leak in found}))
        count = f"{len(wheres)} of {places}" if places is not None else str(len(wheres))
        lines.append(f"{kind} in {count} places ({forms}), e.g. {wheres[0]}")
    return f"{len(by_kind)} sensitive values found:\n  " + "\n  ".join(lines)


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


# ----- the values and the scenario themselves --------------------------------------------------------


def test_values_are_what_the_detectors_catch() -> None:
    for value in DETECTED:
        result = redact_text(value.value)
        assert result.text == placeholder(value.kind), f"{value.kind}: the detectors give {result.text!r}"
        assert redact_text(f"echo {value.value}").text == f"echo {placeholder(value.kind)}"
    assert redact_text(PASSWORD.value).matches == [], "the password must be caught by its window alone"


def test_the_search_finds_every_value_in_every_form_and_not_its_placeholder() -> None:
    """The searches below must be able to fail: each form of each value is found, in text, in bytes
    and in an OCR reading with typical slips, while the redacted text is clean."""
    for value in EVERY_VALUE:
        for form in search_forms(value.value):
            found = leaks_in_text(f"before {form.needle} after", "text", [value])
            assert any(leak.form == form.name for leak in found), (value.kind, form.name)
            assert leaks_in_bytes(b"\x00\x91" + form.needle.encode() + b"\xff", "bytes", [value])
        slipped = value.value.replace("0", "O").replace("1", "l") + "|"
        assert ocr_leaks(ScreenText((f"$ echo {slipped}",)), "ocr", [value]), value.kind
    # Most of a value is a leak too; a card's last four digits are not.
    assert ocr_leaks(ScreenText(("34 5698 7654 32",)), "ocr", [IBAN])
    assert ocr_leaks(ScreenText(("vV4Lp8Zt3Wn6Yb1Hc5SJd@Fs2Ga7Ex",)), "ocr", [API_KEY])
    assert ocr_leaks(ScreenText(("Card **** **** **** 2217", "SSN ***-**-8147")), "ocr") == []
    redacted = " ".join(placeholder(value.kind) for value in EVERY_VALUE)
    assert leaks_in_text(redacted, "redacted text") == []
    assert ocr_leaks(ScreenText((redacted, "Name Email Notes lighthouse canary")), "ocr") == []


def test_the_values_were_really_typed_and_shown(scenario: Scenario) -> None:
    assert scenario.recorder_exit == 0, "\n".join(scenario.recorder_log)
    fields = scenario.app_state["fields"]
    assert fields["name"] == CARD.value
    assert fields["email"] == EMAIL.value
    for value in NOTES_VALUES:
        assert value.value in fields["notes"].splitlines()
    sign_in = scenario.app_state["sign_in"]
    assert sign_in["password"] == PASSWORD.value
    assert sign_in["submitted"] == [SIGN_IN_USER]


# ----- 1. the decrypted spool ------------------------------------------------------------------------


def _spool_records(scenario: Scenario) -> list[Record]:
    from demotrace.device.spool import open_spool

    spool = open_spool(scenario.spool, scenario.key)
    try:
        return list(spool.iter_records())
    finally:
        spool.close()


def _through_the_spool(scenario: Scenario) -> list[Record]:
    """Every record the spool held: those left in it, and those uploaded (then deleted from it, zeroed).
    The uploader sends the spool's records as they are, so the upload bodies are the uploaded ones."""
    return _spool_records(scenario) + uploaded_records(scenario.exchanges)


def test_the_decrypted_spool_holds_no_value(scenario: Scenario) -> None:
    records = _through_the_spool(scenario)
    batches = [record for record in records if isinstance(record, Batch)]
    assert batches and any(isinstance(record, Frame) for record in records)
    markers = {e.text for b in batches for e in b.events if isinstance(e, Marker) and e.kind == "redacted"}
    assert {placeholder(value.kind) for value in EVERY_VALUE} <= markers
    assert typed_text(batches), "no typed character was spooled at all: the check would be vacuous"

    leaks = leaks_in_text(records_text(records), "decrypted spool events")
    for path in _files(scenario.spool):  # at rest: what is left, and the zeroed room of what went
        leaks += leaks_in_bytes(path.read_bytes(), f"spool file {path.name}")
    assert not leaks, _report(leaks)


def test_the_spooled_and_uploaded_frames_show_no_value(scenario: Scenario) -> None:
    frames = {record.frame_id: record for record in _through_the_spool(scenario) if isinstance(record, Frame)}
    texts = scenario.ocr.read_all(frame_images(frames, "upload"))
    words = set().union(*(text.words() for text in texts.values()))
    assert {label.lower() for label in FORM_LABELS} <= words, "OCR does not read the form's labels"
    assert set(CANARY_WORDS) <= words, "OCR never read the canary typed next to the values"
    leaks = [leak for name, text in texts.items() for leak in ocr_leaks(text, name)]
    assert_no_screen_leaks(leaks, len(texts))


# ----- 2. the upload request bodies ------------------------------------------------------------------


def test_the_upload_payloads_hold_no_value(scenario: Scenario) -> None:
    records = uploaded_records(scenario.exchanges)
    assert records and _spool_records(scenario) == [], "not every record was uploaded"
    # Every batch of the session went, in order, the last one closing it; every frame a batch names went.
    batches = sorted((r for r in records if isinstance(r, Batch)), key=lambda batch: batch.seq)
    assert [batch.seq for batch in batches] == list(range(len(batches))), "a batch was not uploaded"
    assert any(isinstance(e, Marker) and e.kind == STOP_MARKER_KIND for e in batches[-1].events)
    taken = {e.frame_id for b in batches for e in b.events if isinstance(e, FrameTaken)}
    assert taken <= {r.frame_id for r in records if isinstance(r, Frame)}, "a frame was not uploaded"

    leaks = leaks_in_text(records_text(records), "decoded upload bodies")
    for index, exchange in enumerate(scenario.exchanges):
        where = f"{exchange.method} {exchange.path} (request {index})"
        leaks += leaks_in_bytes(exchange.request_body, f"body of {where}")
        leaks += leaks_in_bytes(exchange.response_body, f"answer to {where}")
        plain = zstd_plain(exchange.request_body)
        if plain is not None:
            leaks += leaks_in_bytes(plain, f"decompressed body of {where}")
        leaks += leaks_in_text(json.dumps(exchange.request_headers), f"headers of {where}")
    assert not leaks, _report(leaks)


# ----- 3. the collector's database and blobs ---------------------------------------------------------


def _collector_records(scenario: Scenario) -> list[Record]:
    """Every record the collector holds: through its reader, and every file decoded on its own."""
    from demotrace.collector.reader import CollectorReader

    reader = CollectorReader(scenario.collector)
    records: list[Record] = [*reader.iter_batches(), *reader.iter_frames()]
    for path in _files(scenario.collector):
        record = decode_blob(path.read_bytes())
        if record is not None:
            records.append(record)
    return records


def test_the_collector_database_and_blobs_hold_no_value(scenario: Scenario) -> None:
    from demotrace.collector.store import BLOBS_FOLDER, DATABASE_FILE

    files = _files(scenario.collector)
    assert scenario.collector / DATABASE_FILE in files
    assert any(BLOBS_FOLDER in path.relative_to(scenario.collector).parts for path in files)
    records = _collector_records(scenario)
    assert any(isinstance(record, Batch) for record in records)

    leaks = leaks_in_text(records_text(records), "decoded collector records")
    for path in files:
        where = f"collector file {path.relative_to(scenario.collector)}"
        data = path.read_bytes()
        leaks += leaks_in_bytes(data, where)
        plain = zstd_plain(data)
        if plain is not None:
            leaks += leaks_in_bytes(plain, f"decompressed {where}")
    assert not leaks, _report(leaks)


def test_the_collector_frames_show_no_value(scenario: Scenario) -> None:
    frames = {r.frame_id: r for r in _collector_records(scenario) if isinstance(r, Frame)}
    assert frames
    texts = scenario.ocr.read_all(frame_images(frames, "collector"))
    leaks = [leak for name, text in texts.items() for leak in ocr_leaks(text, name)]
    assert_no_screen_leaks(leaks, len(texts))


# ----- 4. the built dataset ----------------------------------------------------------------------------


def _type_steps(dataset: Path) -> list[dict[str, Any]]:
    steps = []
    for line in (dataset / "trajectories.jsonl").read_text().splitlines():
        steps += [step for step in json.loads(line)["traj"] if step["value"]["action"] == "type"]
    return steps


def test_the_dataset_carries_placeholders_and_frames(scenario: Scenario) -> None:
    typed = _type_steps(scenario.dataset)
    texts = [step["action_detail"]["text"] for step in typed]
    for value in DETECTED:
        mark = placeholder(value.kind)
        assert any(mark in text and "echo" not in text for text in texts), f"no form type step has {mark}"
        assert any(f"echo {mark}" in text for text in texts), f"no xterm type step has echo {mark}"
    assert any(placeholder(PASSWORD.kind) in text for text in texts)
    assert any(CANARY in text for text in texts)
    for line in (scenario.dataset / "trajectories.jsonl").read_text().splitlines():
        for step in json.loads(line)["traj"]:
            assert step["image"], f"step {step['index']} has no frame"
            assert (scenario.dataset / step["image"]).is_file()


def _dataset_text_and_images(dataset: Path) -> tuple[list[tuple[str, bytes]], dict[str, Image.Image]]:
    """Every file's bytes (tar members and Parquet cells too) and every image in the dataset."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    blobs: list[tuple[str, bytes]] = []
    images: dict[str, Image.Image] = {}

    def take(where: str, data: bytes) -> None:
        blobs.append((where, data))
        try:
            with Image.open(io.BytesIO(data)) as image:
                images[where] = image.convert("RGB")
        except UnidentifiedImageError:
            pass

    for path in _files(dataset):
        where = str(path.relative_to(dataset))
        take(where, path.read_bytes())
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        take(f"{where}:{member.name}", extracted.read())
        if path.suffix == ".parquet":
            for row, cells in enumerate(pq.read_table(path).to_pylist()):
                for column, cell in cells.items():
                    if isinstance(cell, bytes):
                        take(f"{where} row {row} {column}", cell)
                    else:
                        blobs.append((f"{where} row {row} {column}", json.dumps(cell, default=str).encode()))
    return blobs, images


def test_the_dataset_files_hold_no_value(scenario: Scenario) -> None:
    blobs, _ = _dataset_text_and_images(scenario.dataset)
    names = {Path(where.split(":")[0].split(" row ")[0]).suffix for where, _ in blobs}
    assert {".jsonl", ".html", ".json"} <= names, f"the dataset lacks expected files: {sorted(names)}"
    leaks = [leak for where, data in blobs for leak in leaks_in_bytes(data, f"dataset {where}")]
    assert not leaks, _report(leaks)


def test_the_dataset_images_show_no_value(scenario: Scenario) -> None:
    _, images = _dataset_text_and_images(scenario.dataset)
    assert any(where.startswith("images/") for where in images)
    texts = scenario.ocr.read_all({f"dataset {where}": image for where, image in images.items()})
    words = set().union(*(text.words() for text in texts.values()))
    assert {label.lower() for label in FORM_LABELS} <= words, "OCR does not read the form's labels"
    assert set(CANARY_WORDS) | {"echo"} <= words, "OCR never read the canary in the form and the xterm"
    leaks = [leak for name, text in texts.items() for leak in ocr_leaks(text, name)]
    assert_no_screen_leaks(leaks, len(texts))


# ----- 5. the logs -------------------------------------------------------------------------------------


def test_the_logs_hold_no_value(scenario: Scenario) -> None:
    assert any(line.startswith("uploaded ") for line in scenario.recorder_log), "the recorder's log is empty"
    assert scenario.collector_log, "the collector's log is empty"
    leaks = leaks_in_text("\n".join(scenario.recorder_log), "the recorder's stderr")
    leaks += leaks_in_text("\n".join(scenario.collector_log), "the collector's stderr")
    leaks += leaks_in_text("\n".join(scenario.build_log), "the dataset build's log")
    assert not leaks, _report(leaks)
