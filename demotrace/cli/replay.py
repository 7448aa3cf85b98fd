"""`demotrace replay`: run a trajectory file's pyautogui code on an X display.

Registered by ``register_replay_commands(app)`` in demotrace/cli/main.py; also runs on its own, for a
process that must bind pyautogui to a display of its choosing:
``python -m demotrace.cli.replay FILE [--episode ID]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from demotrace.cli.shared import fail, stderr
from demotrace.wording import plural

EXIT_BAD_INPUT = 2  # nothing was replayed
EXIT_STOPPED = 1  # replay began and stopped part way (the fail-safe)


def replay(
    trajectory_file: Annotated[
        Path, typer.Argument(help="trajectories.jsonl of a built dataset (OpenCUA/AgentNet style).")
    ],
    episode: Annotated[
        str | None,
        typer.Option("--episode", help="task_id of the one episode to replay (default: all, in file order)."),
    ] = None,
    display: Annotated[
        str | None, typer.Option("--display", help="X display to replay on (default: $DISPLAY).")
    ] = None,
    speed: Annotated[
        float,
        typer.Option(
            "--speed", min=0.1, max=10.0, help="Pacing factor: 2 is twice as fast as the human-ish default."
        ),
    ] = 1.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Parse and check every step, list them, send no input.")
    ] = False,
    values: Annotated[
        list[str] | None,
        typer.Option(
            "--value",
            metavar="KIND=TEXT",
            help="Text to type for a redaction placeholder, like CREDIT_CARD=4111111111111111 (repeatable).",
        ),
    ] = None,
    skip_redacted: Annotated[
        bool,
        typer.Option("--skip-redacted", help="Leave out steps that type a placeholder with no --value."),
    ] = False,
    type_placeholders: Annotated[
        bool,
        typer.Option(
            "--type-placeholders",
            help="Type placeholders as they are, like <EMAIL> (to compare a replay with its recording).",
        ),
    ] = False,
) -> None:
    """Replay recorded steps on a display: pyautogui code is parsed, checked and run, never exec'd."""
    import msgspec

    from demotrace.dataset.export.agentnet import decode_trajectories
    from demotrace.dataset.replay import Pacing
    from demotrace.dataset.replay import replay as run_replay
    from demotrace.dataset.replay_plan import (
        PlaceholderRule,
        ReplayError,
        ReplayStep,
        plan_replay,
        resolve_placeholders,
        select_trajectories,
    )

    rule = (
        None if type_placeholders else PlaceholderRule(placeholder_values(values or []), skip=skip_redacted)
    )

    try:
        data = trajectory_file.read_bytes()
    except OSError as error:
        raise fail(f"cannot read {trajectory_file}: {error.strerror or error}", EXIT_BAD_INPUT) from error
    try:
        trajectories = decode_trajectories(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise fail(f"{trajectory_file} is not a trajectories file: {error}", EXIT_BAD_INPUT) from error

    started = False  # whether input was sent: an error after that stopped a replay part way

    def show(position: int, total: int, step: ReplayStep) -> None:
        nonlocal started
        started = not dry_run
        code = escape(step.code.replace("\n", "; "))
        stderr.print(f"[dim]{position + 1}/{total}[/] {step.label}: {code}", highlight=False, soft_wrap=True)

    try:
        chosen = select_trajectories(trajectories, episode)
        if dry_run:
            steps = plan_replay(chosen)
            skipped: list[str] = []
            if rule is not None:
                steps, skipped = resolve_placeholders(steps, rule)
            for position, step in enumerate(steps):
                show(position, len(steps), step)
            stderr.print(
                f"{plural(len(steps), 'step')} in {plural(len(chosen), 'episode')} check out; no input sent"
            )
        else:
            pacing = Pacing().faster(speed)
            result = run_replay(chosen, display=display, pacing=pacing, on_step=show, placeholders=rule)
            skipped = result.skipped_steps
            stderr.print(
                f"replayed {plural(result.steps, 'step')} ({plural(result.calls, 'pyautogui call')}) from "
                f"{plural(len(chosen), 'episode')} "
                f"on a {result.screen.width}x{result.screen.height} screen"
            )
    except ReplayError as error:
        code = EXIT_STOPPED if started else EXIT_BAD_INPUT
        suffix = "" if started else " (nothing was replayed)"
        raise fail(f"{error}{suffix}", code) from error
    if skipped:
        stderr.print(
            f"[yellow]left out {plural(len(skipped), 'step')} that type redaction placeholders:[/] "
            + escape(", ".join(skipped))
        )


def placeholder_values(given: list[str]) -> dict[str, str]:
    """``--value KIND=TEXT`` options as {"KIND": "TEXT"}; a kind may be written <KIND> too."""
    values: dict[str, str] = {}
    for item in given:
        kind, separator, text = item.partition("=")
        kind = kind.strip().strip("<>")
        if not separator or not kind:
            raise fail(f"--value {item!r} must look like KIND=TEXT, such as EMAIL=ada@example.com")
        values[kind.upper()] = text
    return values


def register_replay_commands(app: typer.Typer) -> None:
    """Add replay to the main ``demotrace`` command."""
    app.command("replay")(replay)


if __name__ == "__main__":
    typer.run(replay)
