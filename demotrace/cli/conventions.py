"""What every `demotrace` command does the way mature CLIs do: ``-h`` next to ``--help``, ``--version``,
and options shown as ``--out PATH`` in help, without Typer's ``<type>`` tags.

Typer prints an option's ``metavar`` where it would print its type tag, so the tags go by giving each
option a metavar once, before the command runs: nothing for a flag, a word for a value. An argument is
shown by its name (its metavar) and its tag is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

HELP_OPTION_NAMES = ["-h", "--help"]
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": HELP_OPTION_NAMES}

_METAVARS: dict[type, str] = {Path: "PATH", int: "N", float: "NUMBER", str: "TEXT"}


def value_metavar(parameter: TyperOption) -> str:
    """The word shown after an option that takes a value, from the type its function declares."""
    annotation = getattr(getattr(parameter, "type_descriptor", None), "annotation", None)
    for kind, word in _METAVARS.items():
        if annotation is kind or (isinstance(annotation, type) and issubclass(annotation, kind)):
            return word
    return (parameter.name or "value").upper()


def tidy_parameter(parameter: TyperOption | TyperArgument) -> None:
    if parameter.metavar is not None:
        return
    if isinstance(parameter, TyperOption) and (parameter.is_flag or parameter.count):
        parameter.metavar = ""  # a flag takes no value: nothing to show
    elif isinstance(parameter, TyperOption):
        parameter.metavar = value_metavar(parameter)
    else:
        parameter.metavar = (parameter.name or "value").upper()  # an argument: its name, as in usage
        # Typer shows an argument's type tag whatever its metavar; the name says enough.
        setattr(parameter, "display_type_rich", _no_type_tag)  # noqa: B010  (a method, on this instance)


def _no_type_tag(ctx: object = None) -> None:
    return None


def tidy_command_tree(command: Any, parent: typer.Context | None = None) -> None:
    """Give every parameter of ``command`` and of its sub-commands its metavar, help option included
    (Click makes that one on demand and keeps it: it is made here, with both names)."""
    context = typer.Context(command, parent=parent, info_name=command.name, **CONTEXT_SETTINGS)
    for parameter in command.params:
        if isinstance(parameter, TyperOption | TyperArgument):
            tidy_parameter(parameter)
    help_option = command.get_help_option(context)
    if help_option is not None:
        help_option.metavar = ""
    if isinstance(command, TyperGroup):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None:
                tidy_command_tree(sub, context)


def show_version(value: bool) -> None:
    if value:
        from demotrace import __version__

        print(f"demotrace {__version__}")
        raise typer.Exit()


VersionOption = typer.Option(
    False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."
)
