"""A self-contained HTML page to look through trajectories step by step (pure: records in, text out).

Markers are positioned in percent of the image so they stay on target however the page scales the
image. Every piece of recorded text is escaped: window titles and typed text are user data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from demotrace.dataset.episodes import Gap
from demotrace.dataset.export.agentnet import ImageRegion, ScreenSize, Trajectory, TrajectoryStep

_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f8; }
nav { position: fixed; top: 0; bottom: 0; left: 0; width: 300px; overflow-y: auto; background: #fff;
      border-right: 1px solid #ddd; padding: 1rem; }
nav h1 { font-size: 1.1rem; margin: 0 0 .25rem; }
nav ol { list-style: none; padding: 0; margin: .75rem 0 0; }
nav li a { display: block; padding: .4rem .5rem; border-radius: 6px; color: inherit; text-decoration: none; }
nav li a:hover { background: #eef3ff; }
nav li .meta { display: block; }
main { margin-left: 300px; padding: 1rem 1.5rem; max-width: 1280px; }
section.episode { background: #fff; border: 1px solid #ddd; border-radius: 8px; margin: 0 0 1.25rem;
                  padding: .75rem 1rem; scroll-margin-top: 1rem; }
section.episode h2 { font-size: 1.05rem; margin: 0 0 .25rem; }
.meta { color: #555; font-size: .8rem; }
.step { display: grid; grid-template-columns: 240px 1fr; gap: .75rem; align-items: start;
        border-top: 1px solid #eee; padding: .5rem 0; }
.step.open { grid-template-columns: 1fr; }
.what { font-size: .9rem; }
.what b { font-weight: 600; }
.gap { border-top: 1px dashed #c7c7cc; padding: .4rem 0; color: #8e8e93; font-size: .85rem;
       font-style: italic; }
.shot { position: relative; background: #222; cursor: zoom-in; border-radius: 4px; overflow: hidden; }
.step.open .shot { cursor: zoom-out; max-width: 1280px; }
.shot img { display: block; width: 100%; height: auto; }
.shot.missing { color: #bbb; display: flex; align-items: center; justify-content: center; font-size: .8rem;
                cursor: default; }
.mark { position: absolute; width: 14px; height: 14px; margin: -9px 0 0 -9px; border: 2px solid #ff2d55;
        border-radius: 50%; box-shadow: 0 0 0 2px #fff; pointer-events: none; }
.step.open .mark { width: 18px; height: 18px; margin: -11px 0 0 -11px; }
.mark.end { border-color: #0a84ff; }
.step.open .mark.end::after { content: "end"; position: absolute; left: 20px; top: -2px; font-size: 11px;
                   color: #fff; background: #0a84ff; padding: 0 3px; border-radius: 3px; }
.shot svg { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
code { display: block; background: #f0f0f3; padding: .3rem .5rem; margin-top: .3rem; overflow-x: auto;
       font-size: .8rem; white-space: pre-wrap; word-break: break-all; }
@media (max-width: 800px) { nav { position: static; width: auto; } main { margin-left: 0; } }
"""

# One click on a thumbnail shows the whole frame in place; another click makes it small again.
_SCRIPT = """
document.addEventListener("click", (event) => {
  const shot = event.target.closest(".shot:not(.missing)");
  if (shot) shot.closest(".step").classList.toggle("open");
});
"""

END_REASONS = {
    "task_end": "ended where the person marked the task done",
    "task_start": "ended where the person started the next task",
    "idle": "ended after a long idle pause",
    "interrupted": "ended where recording stopped, paused or met a window that is not recorded",
    "end_of_session": "ended with the recording session",
}
"""An episode's ``end_reason`` in plain words."""

INSTRUCTION_SOURCES = {
    "marker": "task named by the person",
    "generated": "description made from the apps used",
    "described": "description written by a language model",
}


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _percent(value: int, offset: int, size: int) -> float:
    if size <= 0:
        return 0.0
    return round(min(100.0, max(0.0, (value - offset) * 100.0 / size)), 3)


def _when(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _marks(step: TrajectoryStep, region: ImageRegion) -> str:
    detail = step.action_detail
    if detail.x is None or detail.y is None:
        return ""
    start = (_percent(detail.x, region.left, region.width), _percent(detail.y, region.top, region.height))
    parts = [f'<div class="mark" style="left:{start[0]}%;top:{start[1]}%"></div>']
    if detail.kind == "drag" and detail.end_x is not None and detail.end_y is not None:
        end = (
            _percent(detail.end_x, region.left, region.width),
            _percent(detail.end_y, region.top, region.height),
        )
        parts.append(
            '<svg viewBox="0 0 100 100" preserveAspectRatio="none">'
            f'<line x1="{start[0]}" y1="{start[1]}" x2="{end[0]}" y2="{end[1]}" stroke="#ff2d55" '
            'stroke-width="2" vector-effect="non-scaling-stroke" stroke-dasharray="6 4"/></svg>'
        )
        parts.append(f'<div class="mark end" style="left:{end[0]}%;top:{end[1]}%"></div>')
    return "".join(parts)


def _shot(step: TrajectoryStep, screen: ScreenSize) -> str:
    if step.image is None or step.image_region is None:
        # No frame: still show where the action happened, on a blank screen-shaped box.
        region = ImageRegion(left=0, top=0, width=screen.width, height=screen.height)
        ratio = f"{max(screen.width, 1)} / {max(screen.height, 1)}"
        return f'<div class="shot missing" style="aspect-ratio:{ratio}">no frame{_marks(step, region)}</div>'
    return (
        f'<div class="shot"><img loading="lazy" src="{_text(step.image)}" '
        f'alt="screen before step {step.index}">{_marks(step, step.image_region)}</div>'
    )


def _step(step: TrajectoryStep, screen: ScreenSize) -> str:
    value = step.value
    return (
        f'<div class="step" id="step-{step.index}">{_shot(step, screen)}<div class="what">'
        f"<b>{step.index + 1}. {_text(value.action)}</b> "
        f'<span class="meta">in {_text(value.app or "?")} — {_text(value.window or "")}</span>'
        f'<code>{_text(value.code)}</code><div class="meta">{_text(_when(value.ts))}</div></div></div>'
    )


def _gap(gap: Gap) -> str:
    return (
        f'<div class="gap">{gap.seconds:.0f} s not captured here ({_text(gap.reason)}); '
        "the task went on after it</div>"
    )


def _episode(trajectory: Trajectory) -> str:
    gaps_before: dict[int, list[Gap]] = {}
    for gap in trajectory.gaps:
        gaps_before.setdefault(gap.before_step, []).append(gap)
    rows = "".join(
        "".join(_gap(gap) for gap in gaps_before.get(position, [])) + _step(step, trajectory.screen)
        for position, step in enumerate(trajectory.traj)
    )
    seconds = max(0.0, trajectory.end_wall - trajectory.start_wall)
    return (
        f'<section class="episode" id="{_text(trajectory.task_id)}">'
        f"<h2>{_text(trajectory.instruction)}</h2>"
        f'<div class="meta">{_count(len(trajectory.traj), "step")} in {_duration(seconds)} · '
        f"{_text(END_REASONS.get(trajectory.end_reason, trajectory.end_reason))} · "
        f"{_text(INSTRUCTION_SOURCES.get(trajectory.instruction_source, trajectory.instruction_source))} · "
        f"{_text(trajectory.task_id)} · {trajectory.screen.width}×{trajectory.screen.height} "
        f"{_text(trajectory.platform)}</div>{rows}</section>"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _index(trajectories: Sequence[Trajectory]) -> str:
    items = "".join(
        f'<li><a href="#{_text(trajectory.task_id)}">{_text(trajectory.instruction)}'
        f'<span class="meta">{_count(len(trajectory.traj), "step")} · '
        f"{_text(END_REASONS.get(trajectory.end_reason, trajectory.end_reason))}</span></a></li>"
        for trajectory in trajectories
    )
    return f"<ol>{items}</ol>"


def render_viewer(trajectories: Sequence[Trajectory], title: str = "demotrace dataset") -> str:
    """The whole page: an index of episodes beside them, each step a thumbnail (click: the whole frame)
    with its action. Image paths stay relative, so it works wherever the dataset folder is copied."""
    episodes = "".join(_episode(trajectory) for trajectory in trajectories)
    steps = sum(len(trajectory.traj) for trajectory in trajectories)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>"
        f'<nav><h1>{_text(title)}</h1><div class="meta">{_count(len(trajectories), "episode")} · '
        f"{_count(steps, 'step')}</div>"
        f"{_index(trajectories)}</nav><main>{episodes}</main><script>{_SCRIPT}</script></body></html>\n"
    )
