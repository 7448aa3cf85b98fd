"""Quality filters (empty, too short, mostly redacted, idle), their counts, and the HTML report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import msgspec
import pytest
from dataset_samples import WALL0, click, header, recording, typed

from demotrace.dataset.build import build_dataset
from demotrace.dataset.episodes import split_episodes
from demotrace.dataset.quality import QualityConfig, drop_reason, filter_episodes, idle_fraction
from demotrace.dataset.reduce import reduce_events
from demotrace.model import Batch, Event, Marker, Window


def marker(t: float, kind: str, text: str = "") -> Marker:
    return Marker(t=t, wall=WALL0 + t, kind=kind, text=text)


def window(t: float, app: str, title: str) -> Window:
    return Window(t=t, wall=WALL0 + t, app=app, title=title, pid=1, x=0, y=0, width=100, height=100)


def batch(session_id: str, events: list[Event]) -> Batch:
    events = sorted(events, key=lambda event: event.t)
    return Batch(
        batch_id=f"{session_id}-0",
        session_id=session_id,
        device_id="device",
        seq=0,
        events=events,
        header=header(session_id, "device", 0.0),
    )


def task(start: float, text: str, events: list[Event], end: float) -> list[Event]:
    return [marker(start, "task_start", text), *events, marker(end, "task_end")]


GOOD = task(0.0, "good", [window(0.0, "Tk", "Form"), *click(1.0, 5, 5), *typed(2.0, "fine")], 5.0)
EMPTY = task(10.0, "nothing happened", [], 11.0)
SHORT = task(20.0, "one click", click(21.0, 5, 5), 22.0)
# The device dropped a card number's keys and left its placeholder.
REDACTED = task(
    30.0, "pay", [*typed(31.0, "card "), marker(31.6, "redacted", "<CREDIT_CARD>"), *typed(32.0, " ok")], 35.0
)
IDLE = task(40.0, "walked away", [*click(41.0, 5, 5), *click(42.0, 9, 9), *click(2000.0, 5, 5)], 2001.0)


def test_a_redacted_marker_types_its_placeholder_inside_the_burst() -> None:
    events = sorted(REDACTED, key=lambda event: event.t)
    actions = reduce_events(header("r", "d", 0.0), events)
    assert [(action.kind, action.text) for action in actions] == [("type", "card <CREDIT_CARD> ok")]
    hostile = [*typed(1.0, "a"), marker(1.2, "redacted", "not a <placeholder>")]
    [only] = reduce_events(header("r", "d", 0.0), sorted(hostile, key=lambda event: event.t))
    assert only.text == "a<REDACTED>"


def test_each_episode_is_kept_or_dropped_for_its_first_failing_reason() -> None:
    events = sorted(GOOD + EMPTY + SHORT + REDACTED + IDLE, key=lambda event: event.t)
    head = header("q", "d", 0.0)
    episodes = split_episodes("q", head, events, reduce_events(head, events), keep_empty_tasks=True)
    config = QualityConfig(min_steps=2)
    reasons = {episode.instruction: drop_reason(episode, config) for episode in episodes}
    assert reasons == {
        "good": None,
        "nothing happened": "empty",
        "one click": "too_short",
        "pay": "too_short",  # one step: too short comes first
        "walked away": "idle",
    }
    kept, counts = filter_episodes(episodes, QualityConfig())
    assert [episode.instruction for episode in kept] == ["good", "one click"]
    assert counts.kept == 2
    assert counts.dropped == {"empty": 1, "too_short": 0, "mostly_redacted": 1, "idle": 1}
    idle = next(episode for episode in episodes if episode.instruction == "walked away")
    assert idle_fraction(idle, pause_s=60.0) > 0.99
    assert drop_reason(idle, QualityConfig(max_idle_fraction=1.0)) is None


def test_quality_config_is_strict_msgspec() -> None:
    config = msgspec.json.decode(b'{"min_steps": 3, "max_redacted_fraction": 0.2}', type=QualityConfig)
    assert config == QualityConfig(min_steps=3, max_redacted_fraction=0.2)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"min_stepz": 3}', type=QualityConfig)


def test_summary_counts_kept_and_dropped_episodes(tmp_path: Path) -> None:
    batches = [batch("q", GOOD + EMPTY + SHORT + REDACTED + IDLE)]
    summary = build_dataset(batches, lambda _: None, tmp_path, quality=QualityConfig(min_steps=2))
    assert summary.episodes == 1
    assert summary.episodes_dropped == {"empty": 1, "too_short": 2, "mostly_redacted": 0, "idle": 1}
    figures = json.loads((tmp_path / "summary.json").read_text())
    assert figures["episodes_dropped"] == summary.episodes_dropped
    assert figures["instructions_by_source"] == {"marker": 1}
    [line] = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert json.loads(line)["instruction"] == "good"


def test_report_has_a_plot_per_figure_and_escapes_user_data(tmp_path: Path) -> None:
    sample = recording("r1", "d1", app='<script>alert("$x$")</script>', title="Quarterly $5^2$ budget")
    # Half its steps redacted: kept, and its placeholders counted (titles are redacted at build).
    half_redacted = [window(29.0, "Mail", "Inbox - someone@example.org"), *REDACTED, *click(34.0, 1, 1)]
    redacted = batch("r2", half_redacted)
    summary = build_dataset([*sample.batches, redacted], sample.load_frame, tmp_path)
    assert summary.redactions_by_kind == {"CREDIT_CARD": 1, "EMAIL": 1}
    page = (tmp_path / "report.html").read_text()
    assert Path(summary.report_path) == tmp_path / "report.html"
    for heading in (
        "Episodes kept and dropped",
        "Action types",
        "Episode lengths",
        "Apps (top 15)",
        "Redactions by type",
        "Frames",
        "Bytes by output",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<svg") >= 8
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "CREDIT_CARD" in page and "EMAIL" in page
    assert "http://" not in page.replace('"http://www.w3.org/', "")  # self-contained: namespaces only


def test_histogram_bins_are_whole_numbers_and_a_single_length_is_one_narrow_bar() -> None:
    from demotrace.dataset.report import histogram_edges

    assert histogram_edges([5]) == [4.5, 5.5]
    assert histogram_edges([2, 4, 4]) == [1.5, 2.5, 3.5, 4.5]
    wide = histogram_edges([1, 64])
    widths = {round(b - a, 6) for a, b in itertools.pairwise(wide)}
    assert widths == {3.0} and len(wide) - 1 <= 30  # equal whole-number bins, at most 30
    assert wide[0] == 0.5 and wide[-1] >= 64.5


def test_report_count_axes_have_no_fractional_ticks() -> None:
    import re

    from demotrace.dataset.report import ReportFigures, render_report

    figures = ReportFigures(
        episodes=1,
        steps=3,
        actions_by_kind={"click": 2, "type": 1},
        episode_lengths=[3],
        steps_by_app={"XTerm": 3},
        redactions_by_kind={"EMAIL": 1},
        quality={"kept": 1, "too_short": 0},
        instructions_by_source={"generated": 1},
        frames_written=3,
        steps_without_frame=0,
        bytes_by_output={"images": 1_500_000, "index.html": 20_000},
    )
    page = render_report(figures)
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", page)  # text stays text in our SVGs
    assert "1" in ticks and "2" in ticks
    fractional = [tick for tick in ticks if re.fullmatch(r"\d+\.\d+", tick.strip())]
    assert fractional == []  # 0.5 episodes would be nonsense
    assert any(tick.strip().endswith("MB") for tick in ticks)  # sizes in bytes units, not 1e6
