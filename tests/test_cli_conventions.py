"""The conventions of a mature CLI, for every `demotrace` command: -h, --version, help for every option,
values named in help (``--out PATH``) rather than Typer's ``<type>`` tags."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from typer.core import TyperArgument, TyperGroup, TyperOption

from demotrace import __version__
from demotrace.cli.main import command


def all_commands(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, TyperGroup):
        for name, sub in node.commands.items():
            yield from all_commands(sub, (*path, name))


COMMANDS = list(all_commands(command()))


def test_every_option_and_argument_says_what_it_is_for() -> None:
    missing = [
        f"demotrace {' '.join(path)} {parameter.name}"
        for path, node in COMMANDS
        for parameter in node.params
        if isinstance(parameter, TyperOption | TyperArgument) and not (parameter.help or "").strip()
    ]
    assert missing == []
    assert all((node.help or "").strip() for _, node in COMMANDS)


@pytest.mark.parametrize(
    "path", [path for path, _ in COMMANDS], ids=lambda path: " ".join(path) or "demotrace"
)
def test_help_with_h_and_without_type_tags(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        command().main([*path, "-h"], prog_name="demotrace", standalone_mode=True)
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "Usage: demotrace" in shown
    for tag in ("<bool>", "<path>", "<str>", "<int>", "<float>", "<list"):
        assert tag not in shown, f"demotrace {' '.join(path)} -h shows {tag}"


def test_version_and_help_from_the_installed_command() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "demotrace.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (version.returncode, version.stdout) == (0, f"demotrace {__version__}\n")
    listing = subprocess.run(
        [sys.executable, "-m", "demotrace.cli", "-h"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0
    assert "paths" in listing.stdout and "--version" in listing.stdout
