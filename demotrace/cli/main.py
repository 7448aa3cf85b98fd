"""The one `demotrace` command. Sub-commands import their modules lazily so each starts fast.

Each command group lives in its own module and adds itself with ``register_*_commands(app)``; the order
here is the order ``demotrace --help`` lists them.
"""

from __future__ import annotations

import typer

from demotrace.cli.admin import register_admin_commands
from demotrace.cli.build import register_build_commands
from demotrace.cli.control import register_control_commands
from demotrace.cli.datasets import register_datasets_commands
from demotrace.cli.demo import register_demo_commands
from demotrace.cli.exemption import register_exemption_commands
from demotrace.cli.record import register_record_commands
from demotrace.cli.replay import register_replay_commands
from demotrace.cli.server import register_server_commands

app = typer.Typer(
    name="demotrace",
    help="Record computer use where policy allows it, and turn it into agent-training trajectories.",
    no_args_is_help=True,
    add_completion=False,
)

register_record_commands(app)  # record, enroll
register_server_commands(app)  # server
register_build_commands(app)  # build
register_datasets_commands(app)  # datasets check
register_demo_commands(app)  # demo, up
register_replay_commands(app)  # replay
register_control_commands(app)  # pause, resume, status, task, tray
register_exemption_commands(app)  # exemption
register_admin_commands(app)  # admin


def main() -> None:
    app(prog_name="demotrace")
