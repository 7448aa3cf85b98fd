"""A one-page HTML report on a built dataset, with plots as inline SVG (pure: figures in, text out).

Plots use matplotlib's object API (``Figure``) with the SVG backend, never pyplot: no GUI backend, no
global figure state, safe in a worker thread. Text stays text in the SVG (searchable, small), and math
parsing is off because app names are user data ("$" would start a formula).
"""

from __future__ import annotations

import html
import io
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib
import msgspec
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from demotrace.dataset.export.agentnet import Trajectory
from demotrace.dataset.quality import placeholder_kinds
from demotrace.wording import plural

REPORT_FILE = "report.html"
TOP_APPS = 15

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; background: #f6f6f8; }
section { background: #fff; border: 1px solid #ddd; border-radius: 8px; margin: 1rem 0; padding: .5rem 1rem;
          max-width: 1200px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; }
table { border-collapse: collapse; }
td, th { padding: .2rem .8rem; text-align: left; border-bottom: 1px solid #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.plot svg { max-width: 100%; height: auto; }
.empty { color: #888; }
"""


class ReportFigures(msgspec.Struct):
    """Everything the report shows, computed from the kept trajectories and the build's counters."""

    episodes: int
    steps: int
    actions_by_kind: dict[str, int]
    episode_lengths: list[int]
    steps_by_app: dict[str, int]
    redactions_by_kind: dict[str, int]  # "<KIND>" placeholders in typed text and window titles
    quality: dict[str, int]  # "kept" and one entry per drop reason
    instructions_by_source: dict[str, int]
    frames_written: int
    steps_without_frame: int
    bytes_by_output: dict[str, int]


def count_redactions(trajectories: Sequence[Trajectory]) -> dict[str, int]:
    """Placeholders by kind in typed text and in window titles (each distinct title once per episode,
    since consecutive steps repeat the same window)."""
    counts: Counter[str] = Counter()
    for trajectory in trajectories:
        titles: set[str] = set()
        for step in trajectory.traj:
            counts.update(placeholder_kinds(step.action_detail.text))
            if step.value.window:
                titles.add(step.value.window)
        for title in titles:
            counts.update(placeholder_kinds(title))
    return dict(sorted(counts.items()))


def steps_by_app(trajectories: Sequence[Trajectory]) -> dict[str, int]:
    counts = Counter(step.value.app or "(none)" for trajectory in trajectories for step in trajectory.traj)
    return dict(counts.most_common())


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    # No metadata block: no build date (reproducible output) and no links to RDF vocabularies.
    figure.savefig(buffer, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    text = buffer.getvalue()
    return text[text.find("<svg") :]  # drop the XML prolog and doctype: the SVG sits inside HTML


# Wide and short: at 11 inches (~1050 px) a plot fills its section; the page never stretches one.
PLOT_WIDTH_IN = 11.0
PLOT_HEIGHT_IN = 3.0
MAX_BINS = 30


def _bar_plot(counts: Mapping[str, int], title: str, horizontal: bool = False, unit: str = "") -> str:
    height = max(2.2, 0.28 * len(counts) + 0.9) if horizontal else PLOT_HEIGHT_IN
    # Vertical bars keep a bar's width whatever their number: a lone bar is not stretched across the page.
    width = PLOT_WIDTH_IN if horizontal else min(PLOT_WIDTH_IN, 2.5 + 0.9 * len(counts))
    figure = Figure(figsize=(width, height), layout="tight")
    axes = figure.add_subplot()
    labels, values = list(counts), list(counts.values())
    if horizontal:
        axes.barh(labels[::-1], values[::-1], color="#0a84ff")
        _whole_numbers(axes.xaxis)
        if unit:  # sizes read as 12 kB, 1.3 MB rather than 1.3 × 1e6
            axes.xaxis.set_major_formatter(EngFormatter(unit=unit))
    else:
        axes.bar(labels, values, color="#0a84ff", width=0.6)
        axes.set_xlim(-0.8, len(labels) - 0.2)  # room beside the bars: a lone bar stays a bar
        axes.tick_params(axis="x", labelrotation=30 if len(labels) > 8 else 0)
        _whole_numbers(axes.yaxis)
    axes.set_title(title)
    return _svg(figure)


def _whole_numbers(axis: Any) -> None:
    """Counts are whole: no 0.5 episodes on a count axis."""
    axis.set_major_locator(MaxNLocator(integer=True))


def histogram_edges(values: Sequence[int], max_bins: int = MAX_BINS) -> list[float]:
    """Bin edges for whole-number values: one bin per value, or whole-number bins of equal width when
    the range is wider than ``max_bins``; each edge half-way between two numbers, so a bar is centred
    on the values it counts and a single value gets a bar one unit wide, not the whole axis."""
    low, high = min(values), max(values)
    width = max(1, math.ceil((high - low + 1) / max_bins))
    count = math.ceil((high - low + 1) / width)
    return [low - 0.5 + width * index for index in range(count + 1)]


def _histogram(values: Sequence[int]) -> str:
    figure = Figure(figsize=(PLOT_WIDTH_IN, PLOT_HEIGHT_IN), layout="tight")
    axes = figure.add_subplot()
    edges = histogram_edges(values)
    axes.hist(values, bins=edges, color="#0a84ff", edgecolor="white")
    axes.set_xlim(edges[0] - 0.5, edges[-1] + 0.5)
    _whole_numbers(axes.xaxis)
    _whole_numbers(axes.yaxis)
    axes.set_title("episode lengths")
    axes.set_xlabel("steps per episode")
    axes.set_ylabel("episodes")
    return _svg(figure)


def _table(counts: Mapping[str, int]) -> str:
    rows = "".join(
        f'<tr><td>{html.escape(name)}</td><td class="n">{value:,}</td></tr>' for name, value in counts.items()
    )
    return f"<table>{rows}</table>"


def _section(title: str, counts: Mapping[str, int], plot: Callable[[Mapping[str, int]], str]) -> str:
    """A heading, the plot of ``counts`` and the same figures as a table; only a note when empty."""
    body = (
        f'<div class="plot">{plot(counts)}</div>{_table(counts)}' if counts else '<p class="empty">none</p>'
    )
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _bars(title: str, horizontal: bool = False, unit: str = "") -> Callable[[Mapping[str, int]], str]:
    return lambda counts: _bar_plot(counts, title, horizontal, unit)


def render_report(figures: ReportFigures, title: str = "demotrace dataset report") -> str:
    apps = dict(list(figures.steps_by_app.items())[:TOP_APPS])
    lengths = {plural(length, "step"): n for length, n in sorted(Counter(figures.episode_lengths).items())}
    storage = {"frames written": figures.frames_written, "steps without frame": figures.steps_without_frame}
    # A fixed hash salt makes the SVG ids, and so the report, the same for the same data.
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "demotrace", "text.parse_math": False, "font.size": 9}
    ):
        sections = [
            _section("Episodes kept and dropped", figures.quality, _bars("episodes")),
            _section("Action types", figures.actions_by_kind, _bars("steps by action")),
            _section("Episode lengths", lengths, lambda _: _histogram(figures.episode_lengths)),
            _section(f"Apps (top {TOP_APPS})", apps, _bars("steps by app", horizontal=True)),
            _section(
                "Redactions by type",
                figures.redactions_by_kind,
                _bars("placeholders in typed text and titles"),
            ),
            _section("Frames", storage, _bars("frames")),
            _section("Bytes by output", figures.bytes_by_output, _bars("bytes", horizontal=True, unit="B")),
            _section("Instruction sources", figures.instructions_by_source, _bars("episodes by source")),
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{plural(figures.episodes, 'episode')} · {plural(figures.steps, 'step')}</p>"
        f"{''.join(sections)}</body></html>\n"
    )
