"""Which episodes are worth training on (pure): each episode is kept, or dropped for one named reason.

Reasons, checked in this order (an episode counts once, under the first that applies):

- ``empty``: a marked task in which nothing was captured;
- ``too_short``: fewer steps than ``min_steps``, or shorter than ``min_duration_s``;
- ``mostly_redacted``: more than ``max_redacted_fraction`` of its steps typed redacted text (a
  ``<KIND>`` placeholder): the demonstration no longer shows what was done;
- ``idle``: more than ``max_idle_fraction`` of its time spent in pauses longer than ``pause_s``; episodes
  split on idle already, so this catches marked tasks during which the person walked away.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from demotrace.dataset.episodes import Episode
from demotrace.model import Action

DropReason = Literal["empty", "too_short", "mostly_redacted", "idle"]
DROP_REASONS: tuple[DropReason, ...] = ("empty", "too_short", "mostly_redacted", "idle")

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")


class QualityConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Thresholds of the filters; the defaults drop only what cannot teach anything (empty tasks, idle
    or mostly-redacted ones), and keep one-step episodes ("press ctrl+s" is a task too)."""

    min_steps: int = 1
    min_duration_s: float = 0.0
    max_redacted_fraction: float = 0.5
    pause_s: float = 60.0
    max_idle_fraction: float = 0.9


class QualityCounts(msgspec.Struct):
    kept: int
    dropped: dict[str, int]  # by reason, every reason listed (0 if none)


def placeholder_kinds(text: str | None) -> list[str]:
    """The kinds of the ``<KIND>`` placeholders in a text, in order ("<EMAIL> <SECRET>" → EMAIL, SECRET)."""
    return PLACEHOLDER.findall(text) if text else []


def is_redacted_step(action: Action) -> bool:
    return action.kind == "type" and bool(placeholder_kinds(action.text))


def redacted_fraction(actions: Sequence[Action]) -> float:
    if not actions:
        return 0.0
    return sum(1 for action in actions if is_redacted_step(action)) / len(actions)


def idle_fraction(episode: Episode, pause_s: float) -> float:
    """Share of the episode's wall time spent in gaps between steps longer than ``pause_s``."""
    span = episode.end_wall - episode.start_wall
    if span <= 0 or len(episode.actions) < 2:
        return 0.0
    idle = 0.0
    for before, after in zip(episode.actions, episode.actions[1:], strict=False):
        gap = after.wall - (before.wall + max(0.0, before.t_end - before.t))
        if gap > pause_s:
            idle += gap
    return min(1.0, idle / span)


def drop_reason(episode: Episode, config: QualityConfig) -> DropReason | None:
    actions = episode.actions
    if not actions:
        return "empty"
    if len(actions) < config.min_steps or episode.end_wall - episode.start_wall < config.min_duration_s:
        return "too_short"
    if redacted_fraction(actions) > config.max_redacted_fraction:
        return "mostly_redacted"
    if idle_fraction(episode, config.pause_s) > config.max_idle_fraction:
        return "idle"
    return None


def filter_episodes(
    episodes: Iterable[Episode], config: QualityConfig
) -> tuple[list[Episode], QualityCounts]:
    """The episodes that pass, in order, and how many were kept and dropped per reason."""
    kept: list[Episode] = []
    dropped: Counter[str] = Counter()
    for episode in episodes:
        reason = drop_reason(episode, config)
        if reason is None:
            kept.append(episode)
        else:
            dropped[reason] += 1
    return kept, QualityCounts(kept=len(kept), dropped={reason: dropped[reason] for reason in DROP_REASONS})
