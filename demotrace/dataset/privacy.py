"""Pseudonyms for ids and scrubbing of identifying names from text, before anything is exported.

Every id that is a key in the collector's store (device, session, frame) is replaced by a keyed hash
(HMAC-SHA256 under a per-dataset secret), so a dataset cannot be joined back to the store, or to another
dataset, without the key; the same id still gets the same pseudonym throughout one dataset, so episodes
can be grouped by contributor.

Text that reaches an output (window titles, app names, typed text, task instructions) goes through the
typed-text detectors of ``demotrace.redact`` and then a literal scrub of known names: the OS user and host
name of the machine that builds (a researcher building on the laptop that recorded), any extra names the
caller knows, and the raw ids of the dataset's own devices and sessions.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from demotrace.model import Action, Event, Marker, SessionHeader, Window

PSEUDONYM_KEY_SUFFIX = ".pseudonym-key"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
# 128 bits: collision-free at any dataset size, and short enough for file names and WebDataset keys.
PSEUDONYM_HEX_CHARS = 32
# Shorter names would scrub ordinary words and abbreviations ("a", "x") all over the text.
MIN_NAME_CHARS = 2

USER_PLACEHOLDER = "<USER>"
HOST_PLACEHOLDER = "<HOST>"
DEVICE_PLACEHOLDER = "<DEVICE>"
SESSION_PLACEHOLDER = "<SESSION>"


class PseudonymKeyError(ValueError):
    """The key file exists but does not hold a usable key."""


@dataclass(frozen=True)
class Pseudonyms:
    """Keyed hashes of ids; ``kind`` separates domains so equal strings of different kinds differ."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"a pseudonym key needs at least {MIN_KEY_BYTES} bytes")

    def of(self, kind: str, value: str) -> str:
        message = f"{kind}\x00{value}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]

    def device(self, device_id: str) -> str:
        return self.of("device", device_id)

    def session(self, session_id: str) -> str:
        return self.of("session", session_id)

    def frame(self, frame_id: str) -> str:
        return self.of("frame", frame_id)


def default_key_path(out_dir: Path) -> Path:
    """Beside the dataset folder, not in it: the folder can be shared whole without its key."""
    return out_dir.parent / f".{out_dir.name}{PSEUDONYM_KEY_SUFFIX}"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path`` (hex text), or a new random one written there with mode 0600.

    Reusing an existing key keeps pseudonyms stable when the same dataset folder is rebuilt.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key(path)
    key = new_key()
    with os.fdopen(fd, "w") as file:
        file.write(key.hex() + "\n")
    return key


def read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as error:
        raise PseudonymKeyError(f"{path} does not hold a hex key") from error
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"{path} holds a key shorter than {MIN_KEY_BYTES} bytes")
    os.chmod(path, 0o600)  # in case it was copied in with looser permissions
    return key


# --- names ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownNames:
    """Literal strings that identify someone, and what each kind is replaced by."""

    user_names: tuple[str, ...] = ()
    host_names: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = ()

    def merged(self, other: KnownNames) -> KnownNames:
        return KnownNames(
            user_names=self.user_names + other.user_names,
            host_names=self.host_names + other.host_names,
            device_ids=self.device_ids + other.device_ids,
            session_ids=self.session_ids + other.session_ids,
        )


def _full_name_of(user: str) -> str:
    """The account's real name from the password database (GECOS), if the platform has one."""
    try:
        import pwd

        gecos = pwd.getpwnam(user).pw_gecos
    except (ImportError, KeyError):
        return ""
    return gecos.split(",", 1)[0].strip()


def local_names() -> KnownNames:
    """The user and host name of this machine (no DNS lookup: that could block or leak)."""
    users: list[str] = []
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no USER/LOGNAME variables
        user = ""
    if user:
        users += [user, _full_name_of(user)]
    host = socket.gethostname()
    hosts = [host, host.split(".", 1)[0]] if host else []
    return KnownNames(
        user_names=tuple(name for name in users if name), host_names=tuple(name for name in hosts if name)
    )


class TextScrubber:
    """Replaces every known name in a text by its placeholder, case-insensitively, as a whole token (not
    inside a longer word or id), longest names first so a full host name wins over its first label."""

    def __init__(self, names: KnownNames) -> None:
        placeholders: dict[str, str] = {}
        groups = [
            (names.session_ids, SESSION_PLACEHOLDER),
            (names.device_ids, DEVICE_PLACEHOLDER),
            (names.host_names, HOST_PLACEHOLDER),
            (names.user_names, USER_PLACEHOLDER),  # last: a user name equal to a host name reads as user
        ]
        for values, placeholder in groups:
            for value in values:
                if len(value.strip()) >= MIN_NAME_CHARS:
                    placeholders[value.strip().casefold()] = placeholder
        self._placeholders = placeholders
        alternatives = sorted(placeholders, key=len, reverse=True)
        self._pattern = (
            re.compile(
                r"(?<![0-9A-Za-z])(?:"
                + "|".join(re.escape(name) for name in alternatives)
                + r")(?![0-9A-Za-z])",
                re.IGNORECASE,
            )
            if alternatives
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda match: self._placeholders[match.group(0).casefold()], text)


def _load_text_redactor() -> Callable[[str], str] | None:
    """The typed-text detectors of ``demotrace.redact``, if that package is installed with this one."""
    try:
        from demotrace.redact.text import redact_text
    except ImportError:
        return None
    return lambda text: redact_text(text).text


_redact_detected = _load_text_redactor()


def redact_and_scrub(text: str, scrub_names: TextScrubber) -> str:
    """Sensitive spans (cards, emails, secrets …) first, so an email holding a user name goes whole; then
    the known names. FALLBACK: without ``demotrace.redact`` only the known names are scrubbed."""
    if _redact_detected is not None and text:
        text = _redact_detected(text)
    return scrub_names(text)


# --- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrubber:
    """What a build applies to every piece of recorded text: detectors + names for free text (titles,
    typing, instructions), names only for app names (class names the detectors would misread)."""

    names: TextScrubber

    def text(self, text: str) -> str:
        return redact_and_scrub(text, self.names)

    def app(self, app: str) -> str:
        return self.names(app)


def scrub_window(window: Window, scrubber: Scrubber) -> Window:
    url = scrubber.text(window.url) if window.url is not None else None
    return msgspec.structs.replace(
        window, app=scrubber.app(window.app), title=scrubber.text(window.title), url=url
    )


def scrub_actions(actions: Sequence[Action], scrubber: Scrubber) -> list[Action]:
    """Actions with scrubbed window context and typed text (key names and coordinates identify nobody)."""
    windows: dict[int, Window] = {}  # many actions share one Window object: scrub it once

    def scrubbed_window(window: Window) -> Window:
        if id(window) not in windows:
            windows[id(window)] = scrub_window(window, scrubber)
        return windows[id(window)]

    result = []
    for action in actions:
        window = scrubbed_window(action.window) if action.window is not None else None
        text = scrubber.text(action.text) if action.text is not None else None
        element = action.element
        if element is not None:  # an element's name is page text: a label may hold an email, a name
            element = msgspec.structs.replace(element, name=scrubber.text(element.name))
        result.append(msgspec.structs.replace(action, window=window, text=text, element=element))
    return result


def scrub_markers(events: Iterable[Event], scrubber: Scrubber) -> list[Event]:
    """Events with scrubbed marker texts (a task's instruction is typed by the person)."""
    return [
        msgspec.structs.replace(event, text=scrubber.text(event.text))
        if isinstance(event, Marker) and event.text
        else event
        for event in events
    ]


def pseudonymous_header(header: SessionHeader, session_id: str, pseudonyms: Pseudonyms) -> SessionHeader:
    return msgspec.structs.replace(
        header, session_id=pseudonyms.session(session_id), device_id=pseudonyms.device(header.device_id)
    )
