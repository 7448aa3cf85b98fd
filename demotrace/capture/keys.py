"""Key naming: pynput keys → pyautogui-style names, the character typed, the keysym; modifier state.

Pure, and pynput-free on purpose: the listener callback hands over the pynput object untouched, and
:func:`raw_key_of` reads it by duck typing (``Key`` enum members have ``.name`` and ``.value``,
``KeyCode`` has ``.vk``, ``.char``, ``.is_dead``), so everything here runs and tests without an X server.

On X11, pynput's ``vk`` is the X keysym.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from demotrace.model import MODIFIERS

# pynput Key enum name → pyautogui key name. Aliases (alt_l, ctrl_l, shift_l, cmd_l) never reach us:
# enum aliases resolve to the first name (alt, ctrl, shift, cmd).
PYNPUT_TO_PYAUTOGUI: dict[str, str] = {
    "alt": "alt",
    "alt_l": "alt",
    "alt_r": "altright",
    # AltGr selects characters rather than commands; pyautogui has no name for it.
    "alt_gr": "altgr",
    "backspace": "backspace",
    "caps_lock": "capslock",
    "cmd": "win",
    "cmd_l": "win",
    "cmd_r": "winright",
    "ctrl": "ctrl",
    "ctrl_l": "ctrl",
    "ctrl_r": "ctrlright",
    "delete": "delete",
    "down": "down",
    "end": "end",
    "enter": "enter",
    "esc": "esc",
    "home": "home",
    "left": "left",
    "page_down": "pagedown",
    "page_up": "pageup",
    "right": "right",
    "shift": "shift",
    "shift_l": "shift",
    "shift_r": "shiftright",
    "space": "space",
    "tab": "tab",
    "up": "up",
    "media_play_pause": "playpause",
    "media_volume_mute": "volumemute",
    "media_volume_down": "volumedown",
    "media_volume_up": "volumeup",
    "media_previous": "prevtrack",
    "media_next": "nexttrack",
    "insert": "insert",
    "menu": "apps",
    "num_lock": "numlock",
    "pause": "pause",
    "print_screen": "printscreen",
    "scroll_lock": "scrolllock",
    **{f"f{number}": f"f{number}" for number in range(1, 25)},
}

# pyautogui key name → the modifier it holds (model.MODIFIERS vocabulary).
MODIFIER_OF_KEY: dict[str, str] = {
    "ctrl": "ctrl",
    "ctrlright": "ctrl",
    "shift": "shift",
    "shiftright": "shift",
    "alt": "alt",
    "altright": "alt",
    "win": "super",
    "winright": "super",
}

# Modifiers that turn a key into a command rather than a character (shift only changes the character).
COMMAND_MODIFIERS = frozenset({"ctrl", "alt", "super"})

# Keypad keysyms pynput reports as bare key codes.
_KEYPAD_NAMES: dict[int, str] = {
    **{0xFFB0 + digit: f"num{digit}" for digit in range(10)},
    0xFFAB: "add",
    0xFFAD: "subtract",
    0xFFAA: "multiply",
    0xFFAF: "divide",
    0xFFAE: "decimal",
    0xFFAC: "separator",
    0xFF8D: "enter",
    0xFFBD: "=",
    0xFF95: "home",
    0xFF96: "left",
    0xFF97: "up",
    0xFF98: "right",
    0xFF99: "down",
    0xFF9A: "pageup",
    0xFF9B: "pagedown",
    0xFF9C: "end",
    0xFF9E: "insert",
    0xFF9F: "delete",
}

_CHAR_NAMES = {" ": "space", "\t": "tab", "\n": "enter", "\r": "enter"}


@dataclass(frozen=True)
class RawKey:
    """What pynput told us about a key, as plain data."""

    pynput_name: str | None = None  # set for pynput ``Key`` enum members ("ctrl", "f5", ...)
    keysym: int = 0
    char: str | None = None
    dead: bool = False


@dataclass(frozen=True)
class KeyInfo:
    key: str  # pyautogui-style name
    keysym: int
    char: str | None  # the printable character, if the key types one


def raw_key_of(pynput_key: object) -> RawKey:
    """Read a pynput ``Key``/``KeyCode`` (or None, for a key pynput could not decode) into a RawKey."""
    if pynput_key is None:
        return RawKey()
    name = getattr(pynput_key, "name", None)
    code = getattr(pynput_key, "value", None) if isinstance(name, str) else pynput_key
    vk = getattr(code, "vk", None)
    char = getattr(code, "char", None)
    return RawKey(
        pynput_name=name if isinstance(name, str) else None,
        keysym=vk if isinstance(vk, int) else 0,
        char=char if isinstance(char, str) else None,
        dead=bool(getattr(code, "is_dead", False)),
    )


def is_printable(char: str | None) -> bool:
    return char is not None and len(char) == 1 and (char.isprintable() or char in "\t\n\r")


def describe_key(raw: RawKey) -> KeyInfo:
    """Name a key the way pyautogui does, with the character it types, if printable."""
    if raw.pynput_name is not None:
        name = PYNPUT_TO_PYAUTOGUI.get(raw.pynput_name, raw.pynput_name)
        char = " " if name == "space" else None
        return KeyInfo(name, raw.keysym, char)
    if raw.keysym in _KEYPAD_NAMES:
        char = raw.char if is_printable(raw.char) else None
        return KeyInfo(_KEYPAD_NAMES[raw.keysym], raw.keysym, char)
    if raw.dead:
        # A dead key types nothing by itself; the next key carries the composed character.
        return KeyInfo(f"dead_{raw.char or hex(raw.keysym)}", raw.keysym, None)
    if is_printable(raw.char):
        assert raw.char is not None
        name = _CHAR_NAMES.get(raw.char, raw.char.lower())
        return KeyInfo(name, raw.keysym, raw.char)
    if raw.keysym:
        return KeyInfo(f"keysym_{raw.keysym:#x}", raw.keysym, None)
    return KeyInfo("unknown", 0, None)


def press_modifiers(held: frozenset[str], key: str, down: bool) -> frozenset[str]:
    """The held modifier keys after ``key`` went down or up (non-modifier keys leave it unchanged)."""
    if key not in MODIFIER_OF_KEY:
        return held
    return held | {key} if down else held - {key}


def modifiers_held(held: Iterable[str], excluding: str | None = None) -> list[str]:
    """Modifier names (model.MODIFIERS order) held by the keys in ``held``, not counting ``excluding``."""
    active = {MODIFIER_OF_KEY[key] for key in held if key != excluding and key in MODIFIER_OF_KEY}
    return [modifier for modifier in MODIFIERS if modifier in active]


def is_hotkey(key: str, modifiers: Iterable[str]) -> bool:
    """A non-modifier key pressed while ctrl, alt or super is held."""
    return key not in MODIFIER_OF_KEY and not COMMAND_MODIFIERS.isdisjoint(modifiers)


def typed_char(info: KeyInfo, modifiers: Iterable[str], down: bool) -> str | None:
    """The character a key event types: only on press, and not when it is a command (ctrl+s types nothing)."""
    if not down or is_hotkey(info.key, modifiers):
        return None
    return info.char
