"""Actions → episodes: the task-sized trajectories a dataset is made of.

An episode is bounded by task markers the person set (task_start / task_end), by spans that were not
captured (a trajectory with a hole would teach wrong transitions), and, outside marked tasks, by idle
gaps. Inside a marked task neither an idle gap nor a span that was not captured (a look at a denied
window, a pause) splits it: the person said where the task ends, and half a task under the whole task's
instruction would be a wrong label. Such a span stays in the task as a ``Gap`` before the step that
follows it, so a consumer sees exactly where the hole is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from demotrace.model import Action, Event, Marker, SessionHeader
from demotrace.protocol import NOT_CAPTURED_MARKER_KIND, STOP_MARKER_KIND

DEFAULT_IDLE_GAP_S = 60.0
# Marker kinds after which the input stream has a hole (or ends).
INTERRUPTION_KINDS = frozenset({NOT_CAPTURED_MARKER_KIND, "paused", STOP_MARKER_KIND})
# The holes a marked task keeps as gaps instead of ending (the recorder stopping still ends it).
GAP_KINDS = frozenset({NOT_CAPTURED_MARKER_KIND, "paused"})
_TITLE_LIMIT = 60

# "described": written by a language model from the episode's (scrubbed) titles and actions.
InstructionSource = Literal["marker", "generated", "described"]
EndReason = Literal["task_end", "task_start", "idle", "interrupted", "end_of_session"]


class Gap(msgspec.Struct):
    """A span inside a marked task in which nothing was captured, before step ``before_step``."""

    before_step: int  # index of the first step after the gap (== the number of steps before it)
    seconds: float
    reason: str  # the marker's reason ("window not allowed by policy", "paused"...), already scrubbed


class Episode(msgspec.Struct):
    """One trajectory: the actions of one task (or one stretch of work) in one session."""

    task_id: str  # f"{session_id}-{index:04d}", index counting kept episodes from 0
    instruction: str
    session_id: str
    header: SessionHeader
    actions: list[Action]
    start_wall: float
    end_wall: float
    instruction_source: InstructionSource
    end_reason: EndReason
    gaps: list[Gap] = []


@dataclass
class _Segment:
    marked_instruction: str | None = None
    in_task: bool = False
    actions: list[Action] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    end_reason: EndReason = "end_of_session"
    start_wall: float = 0.0  # of the marker that opened it, if any
    end_wall: float = 0.0  # of the marker that closed it, if any


def _quote_title(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= _TITLE_LIMIT else title[: _TITLE_LIMIT - 1] + "…"


def describe_actions(actions: Sequence[Action]) -> str:
    """A deterministic instruction for an unmarked stretch: the apps (with their first window title) in
    order of first use and the number of steps.

    Example: 'Work in XTerm ("bash") and Tk ("Demo Form"): 12 steps'.
    """
    first_title_of_app: dict[str, str] = {}
    for action in actions:
        if action.window is not None and action.window.app not in first_title_of_app:
            first_title_of_app[action.window.app] = action.window.title
    places = [
        f'{app or "an unnamed app"} ("{_quote_title(title)}")' if title.strip() and title != app else app
        for app, title in first_title_of_app.items()
    ]
    places = [place for place in places if place]
    if not places:
        where = "on the desktop"
    elif len(places) == 1:
        where = f"in {places[0]}"
    else:
        where = f"in {', '.join(places[:-1])} and {places[-1]}"
    steps = f"{len(actions)} step" + ("" if len(actions) == 1 else "s")
    return f"Work {where}: {steps}"


def _timeline(events: Sequence[Event], actions: Sequence[Action]) -> list[Marker | Action]:
    markers = [event for event in events if isinstance(event, Marker)]
    # At equal times a marker goes first: a task_start stamped with its first action's t includes it.
    keyed = [((m.t, 0), m) for m in markers] + [((a.t, 1), a) for a in actions]
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


def _segments(timeline: Sequence[Marker | Action], idle_gap: float) -> list[_Segment]:
    segments: list[_Segment] = []
    current = _Segment()

    def close(reason: EndReason, next_segment: _Segment, wall: float) -> None:
        nonlocal current
        current.end_reason = reason
        current.end_wall = wall
        segments.append(current)
        current = next_segment

    for item in timeline:
        if isinstance(item, Marker):
            if item.kind == "task_start":
                task = _Segment(
                    marked_instruction=item.text.strip() or None, in_task=True, start_wall=item.wall
                )
                close("task_start", task, item.wall)
            elif item.kind == "task_end":
                close("task_end", _Segment(start_wall=item.wall), item.wall)
            elif current.in_task and item.kind in GAP_KINDS:
                reason = item.text or item.kind
                current.gaps.append(Gap(len(current.actions), round(item.duration, 3), reason))
            elif item.kind in INTERRUPTION_KINDS:
                close("interrupted", _Segment(start_wall=item.wall), item.wall)
            continue
        if current.actions and not current.in_task and item.t - current.actions[-1].t_end > idle_gap:
            close("idle", _Segment(), item.wall)
        current.actions.append(item)
    segments.append(current)
    return segments


def _end_wall(action: Action) -> float:
    return action.wall + max(0.0, action.t_end - action.t)


def split_episodes(
    session_id: str,
    header: SessionHeader,
    events: Sequence[Event],
    actions: Sequence[Action],
    idle_gap: float = DEFAULT_IDLE_GAP_S,
    *,
    keep_empty_tasks: bool = False,
) -> list[Episode]:
    """Split one session's actions (sorted by t) into episodes; episodes without actions are dropped,
    except, with ``keep_empty_tasks``, marked tasks in which nothing was captured (so a caller can count
    them): those come with no actions and the walls of their markers."""
    episodes: list[Episode] = []
    for segment in _segments(_timeline(events, actions), idle_gap):
        if not segment.actions and not (keep_empty_tasks and segment.in_task):
            continue
        marked = segment.marked_instruction
        start_wall = segment.actions[0].wall if segment.actions else segment.start_wall
        end_wall = max((_end_wall(action) for action in segment.actions), default=segment.end_wall)
        episodes.append(
            Episode(
                task_id=f"{session_id}-{len(episodes):04d}",
                instruction=marked if marked is not None else describe_actions(segment.actions),
                session_id=session_id,
                header=header,
                actions=segment.actions,
                start_wall=start_wall,
                end_wall=max(start_wall, end_wall),
                instruction_source="marker" if marked is not None else "generated",
                end_reason=segment.end_reason,
                # A gap after the last step is no hole between steps: the task ended in it.
                gaps=[gap for gap in segment.gaps if gap.before_step < len(segment.actions)],
            )
        )
    return episodes
