"""Replay fidelity over several seeded sessions: record, build, replay on a fresh desktop, compare.

    .venv/bin/python bench/fidelity.py                      # seeds 1-5
    .venv/bin/python bench/fidelity.py --seeds 7 11 13 --out /tmp/fidelity

Each seed records one scripted cycle (real recorder and collector, built dataset), then replays the
dataset's pyautogui code with `demotrace replay` on a new Xvfb with the apps in their starting state,
and compares the form's final states (demotrace/demo/fidelity.py lists the keys). Prints, per seed,
the keys that differ and those only redaction explains, then the share of sessions and of episodes
whose final state matched.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from demotrace.demo.fidelity import FidelityResult, record_and_replay


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, default=None, help="keep recordings and replays here")
    args = parser.parse_args()
    console = Console()
    out = args.out or Path(tempfile.mkdtemp(prefix="demotrace-fidelity-"))

    results: list[FidelityResult] = []
    failures: dict[int, str] = {}
    for seed in args.seeds:
        try:
            results.append(record_and_replay(out / f"seed-{seed}", seed=seed, console=console))
        except RuntimeError as error:  # FidelityError, or a desktop/collector/recorder that did not start
            failures[seed] = str(error).splitlines()[0]
            console.print(f"[red]seed {seed}: {error}[/]")

    table = Table(title="replay fidelity: final state of the demo form, recorded vs replayed")
    for column in ("seed", "episodes", "steps", "redacted steps", "final state", "differs", "redacted"):
        table.add_column(column)
    for result in results:
        comparison = result.comparison
        table.add_row(
            str(result.seed),
            str(result.episodes),
            str(result.steps),
            str(result.redacted_steps),
            "[green]matches[/]" if comparison.matches else "[red]differs[/]",
            ", ".join(comparison.differing) or "-",
            ", ".join(comparison.redacted) or "-",
        )
    for seed, reason in failures.items():
        table.add_row(str(seed), "-", "-", "-", "[red]replay failed[/]", reason, "-")
    console.print(table)
    for result in results:
        for key in result.comparison.differing:
            console.print(f"  seed {result.seed}: {result.comparison.describe(key)}", highlight=False)

    sessions = len(args.seeds)
    matched = [result for result in results if result.comparison.matches]
    episodes = sum(result.episodes for result in results) + len(failures)  # a failed replay counts once
    matched_episodes = sum(result.episodes for result in matched)
    console.print(
        f"sessions whose final state matches: {len(matched)}/{sessions} ({len(matched) / sessions:.0%}); "
        f"episodes replayed within them: {matched_episodes}/{episodes}"
    )
    console.print(f"recordings and replays kept in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
