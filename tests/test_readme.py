"""README.md's commands exist as written: every `demotrace ...` it shows names a real command, and every
option it gives that command is one the command takes (the cheap half of replaying the README; the
commands' behaviour is covered by their own tests)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperGroup

from demotrace.cli.main import command

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_blocks(text: str) -> list[str]:
    """The lines of the README's ```sh blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return lines


def inline_commands(text: str) -> list[str]:
    """`demotrace ...` spans in the prose (joined across a line break)."""
    return [" ".join(span.split()) for span in re.findall(r"`(demotrace [^`]+)`", text)]


def readme_commands() -> list[str]:
    text = README.read_text()
    found = [line for line in shell_blocks(text) if line.startswith("demotrace ")] + inline_commands(text)
    return sorted(set(found))


def resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The click command the words name, the path taken, and the words after it."""
    node: Any = command()
    path: list[str] = []
    rest = list(words)
    while rest and isinstance(node, TyperGroup):
        # `list|revoke ID` names two commands: the first one decides the node; all are checked below.
        names = rest[0].strip("[]").split("|")
        if names[0] not in node.commands:
            break
        node = node.commands[names[0]]
        path.append(names[0])
        rest.pop(0)
    return node, path, rest


def option_names(node: Any) -> set[str]:
    names = {"--help", "-h"}
    for parameter in node.params:
        names.update(parameter.opts)
        names.update(parameter.secondary_opts)
    return names


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_it_promises() -> None:
    shown = {" ".join(resolve(shlex.split(line)[1:])[1]) for line in COMMANDS}
    expected = {
        "up", "server", "enroll", "record", "build", "datasets check", "replay", "paths", "status", "pause",
        "resume", "task start", "tray", "exemption request", "exemption status", "admin policy get",
        "admin policy set", "admin exemptions list", "admin audit", "admin devices list", "server migrate",
        "browser install",
    }  # fmt: skip
    assert expected <= shown, expected - shown


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_and_option_exists(line: str) -> None:
    words = shlex.split(line.replace("...", ""))[1:]
    node, path, rest = resolve(words)
    parent = command()
    for name in path[:-1]:
        parent = parent.commands[name]
    if isinstance(node, TyperGroup) and rest and not rest[0].strip("[").startswith("-"):
        pytest.fail(f"`{line}`: {' '.join(path) or 'demotrace'} has no command {rest[0]!r}")
    if words and "|" in words[len(path) - 1]:  # `list|revoke ID`: each alternative is a command
        for name in words[len(path) - 1].split("|"):
            assert name in parent.commands, f"`{line}`: no command {name!r}"
    for word in rest:
        for piece in word.strip("[]").split("|"):
            if piece.startswith("-") and piece not in ("-", "--"):
                option = piece.split("=")[0]
                assert option in option_names(node), f"`{line}`: demotrace {' '.join(path)} has no {option}"
