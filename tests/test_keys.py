from __future__ import annotations

from collections.abc import Iterator

import pytest

from demotrace.capture.keys import (
    KeyInfo,
    RawKey,
    describe_key,
    is_hotkey,
    modifiers_held,
    press_modifiers,
    raw_key_of,
    typed_char,
)
from demotrace.demo.desktop import VirtualDesktop


@pytest.mark.parametrize(
    ("pynput_name", "expected"),
    [
        ("ctrl", "ctrl"),
        ("ctrl_r", "ctrlright"),
        ("shift_r", "shiftright"),
        ("alt_r", "altright"),
        ("cmd", "win"),
        ("page_up", "pageup"),
        ("page_down", "pagedown"),
        ("caps_lock", "capslock"),
        ("esc", "esc"),
        ("enter", "enter"),
        ("print_screen", "printscreen"),
        ("menu", "apps"),
        ("media_volume_up", "volumeup"),
        ("f12", "f12"),
    ],
)
def test_named_keys_get_pyautogui_names(pynput_name: str, expected: str) -> None:
    info = describe_key(RawKey(pynput_name=pynput_name, keysym=0xFF00))
    assert info == KeyInfo(expected, 0xFF00, None)


def test_space_is_a_named_key_that_types_a_space() -> None:
    assert describe_key(RawKey(pynput_name="space", keysym=0x20, char=" ")) == KeyInfo("space", 0x20, " ")


def test_characters_are_named_by_their_unshifted_letter_and_keep_the_typed_character() -> None:
    assert describe_key(RawKey(keysym=0x41, char="A")) == KeyInfo("a", 0x41, "A")
    assert describe_key(RawKey(keysym=0x21, char="!")) == KeyInfo("!", 0x21, "!")
    assert describe_key(RawKey(keysym=0xE9, char="é")) == KeyInfo("é", 0xE9, "é")


def test_keypad_dead_and_unknown_keys() -> None:
    assert describe_key(RawKey(keysym=0xFFB7, char="7")) == KeyInfo("num7", 0xFFB7, "7")
    assert describe_key(RawKey(keysym=0xFF8D)) == KeyInfo("enter", 0xFF8D, None)
    assert describe_key(RawKey(keysym=0xFE51, char="\u0301", dead=True)).char is None
    assert describe_key(RawKey(keysym=0x1008FF2A)) == KeyInfo("keysym_0x1008ff2a", 0x1008FF2A, None)
    assert describe_key(RawKey()) == KeyInfo("unknown", 0, None)


def test_modifier_tracking_follows_presses_and_releases() -> None:
    held = press_modifiers(frozenset(), "ctrl", down=True)
    held = press_modifiers(held, "shiftright", down=True)
    held = press_modifiers(held, "s", down=True)  # not a modifier: no change
    assert held == {"ctrl", "shiftright"}
    assert modifiers_held(held) == ["ctrl", "shift"]
    assert modifiers_held(held, excluding="ctrl") == ["shift"]
    held = press_modifiers(held, "ctrl", down=False)
    assert modifiers_held(held) == ["shift"]
    assert modifiers_held({"win", "altright"}) == ["alt", "super"]


def test_hotkeys_and_typed_characters() -> None:
    s = KeyInfo("s", 0x73, "s")
    assert is_hotkey("s", ["ctrl"]) and is_hotkey("tab", ["alt"]) and is_hotkey("l", ["super"])
    assert not is_hotkey("s", ["shift"]) and not is_hotkey("shift", ["ctrl"])
    assert typed_char(s, [], down=True) == "s"
    assert typed_char(s, ["ctrl"], down=True) is None  # ctrl+s saves, it types nothing
    assert typed_char(KeyInfo("s", 0x53, "S"), ["shift"], down=True) == "S"
    assert typed_char(s, [], down=False) is None  # a release types nothing


@pytest.fixture()
def pynput_keyboard(desktop: VirtualDesktop, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("DISPLAY", desktop.display)
    from pynput import keyboard  # needs an X connection at import

    yield keyboard


def test_real_pynput_keys_are_read_into_raw_keys(pynput_keyboard: object) -> None:
    keyboard = pynput_keyboard
    key_enum = keyboard.Key  # type: ignore[attr-defined]
    key_code = keyboard.KeyCode  # type: ignore[attr-defined]
    assert describe_key(raw_key_of(key_enum.ctrl_r)) == KeyInfo("ctrlright", 0xFFE4, None)
    assert describe_key(raw_key_of(key_enum.ctrl_l)) == KeyInfo("ctrl", 0xFFE3, None)  # enum alias
    assert describe_key(raw_key_of(key_enum.f5)) == KeyInfo("f5", 0xFFC2, None)
    assert describe_key(raw_key_of(key_code.from_char("Q", vk=0x51))) == KeyInfo("q", 0x51, "Q")
    assert describe_key(raw_key_of(key_code.from_vk(0xFFB1))) == KeyInfo("num1", 0xFFB1, None)
    assert raw_key_of(None) == RawKey()
