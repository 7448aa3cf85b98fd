"""The one `demotrace` command. Sub-commands import their modules lazily so each starts fast.

Each command group lives in its own module and adds itself with ``register_*_commands(app)``; the order
here is the order ``demotrace --help`` lists them.
"""

from __future__ import annotations

from typing import Any

import typer
import typer.main

from demotrace.cli.admin import register_admin_commands
from demotrace.cli.agent import register_agent_commands
from demotrace.cli.browser import register_browser_commands
from demotrace.cli.build import register_build_commands
from demotrace.cli.control import register_control_commands
from demotrace.cli.conventions import CONTEXT_SETTINGS, VersionOption, tidy_command_tree
from demotrace.cli.datasets import register_datasets_commands
from demotrace.cli.demo import register_demo_commands
from demotrace.cli.exemption import register_exemption_commands
from demotrace.cli.notice import register_notice_commands
from demotrace.cli.paths import register_paths_commands
from demotrace.cli.record import register_record_commands
from demotrace.cli.replay import register_replay_commands
from demotrace.cli.server import register_server_commands

app = typer.Typer(
    name="demotrace",
    help="Record computer use where policy allows it, and turn it into agent-training trajectories.",
    no_args_is_help=True,
    add_completion=False,
    context_settings=CONTEXT_SETTINGS,
)


@app.callback()
def _options(version: bool = VersionOption) -> None:
    """Record computer use where policy allows it, and turn it into agent-training trajectories."""


register_record_commands(app)  # record, enroll
register_server_commands(app)  # server
register_build_commands(app)  # build
register_datasets_commands(app)  # datasets check
register_demo_commands(app)  # demo, up
register_replay_commands(app)  # replay
register_control_commands(app)  # pause, resume, status, task, tray
register_notice_commands(app)  # notice
register_agent_commands(app)  # agent install, agent uninstall
register_paths_commands(app)  # paths
register_exemption_commands(app)  # exemption
register_admin_commands(app)  # admin
register_browser_commands(app)  # browser


def command() -> Any:
    """The Click command Typer builds from ``app``, with our help conventions applied."""
    built = typer.main.get_command(app)
    tidy_command_tree(built)
    return built


def main() -> None:
    """The `demotrace` command (the console script and ``python -m demotrace.cli``)."""
    command()(prog_name="demotrace")
