"""A self-contained HTML page to look through trajectories step by step (pure: records in, text out).

Markers are positioned in percent of the image so they stay on target however the page scales the
image. Every piece of recorded text is escaped: window titles and typed text are user data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from demotrace.dataset.export.agentnet import ImageRegion, ScreenSize, Trajectory, TrajectoryStep

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; background: #f6f6f8; }
h1 { font-size: 1.4rem; }
details.episode { background: #fff; border: 1px solid #ddd; border-radius: 8px; margin: 1rem 0;
                  padding: .5rem 1rem; }
details.episode > summary { cursor: pointer; font-weight: 600; }
.meta { color: #555; font-size: .85rem; }
.step { border-top: 1px solid #eee; padding: 1rem 0; }
.shot { position: relative; max-width: 960px; background: #222; }
.shot img { display: block; width: 100%; height: auto; }
.shot.missing { color: #bbb; display: flex; align-items: center; justify-content: center; }
.mark { position: absolute; width: 18px; height: 18px; margin: -11px 0 0 -11px; border: 2px solid #ff2d55;
        border-radius: 50%; box-shadow: 0 0 0 2px #fff; pointer-events: none; }
.mark.end { border-color: #0a84ff; }
.mark.end::after { content: "end"; position: absolute; left: 20px; top: -2px; font-size: 11px; color: #fff;
                   background: #0a84ff; padding: 0 3px; border-radius: 3px; }
.shot svg { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
pre { background: #f0f0f3; padding: .5rem; overflow-x: auto; max-width: 960px; }
"""


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
        f'<div class="step"><div class="meta">step {step.index} · <b>{_text(value.action)}</b> · '
        f"{_text(value.app or '?')} — {_text(value.window or '')} · {_text(_when(value.ts))}</div>"
        f"{_shot(step, screen)}<pre>{_text(value.code)}</pre></div>"
    )


def _episode(trajectory: Trajectory, open_by_default: bool) -> str:
    steps = "".join(_step(step, trajectory.screen) for step in trajectory.traj)
    return (
        f'<details class="episode"{" open" if open_by_default else ""}>'
        f"<summary>{_text(trajectory.instruction)}</summary>"
        f'<div class="meta">{_text(trajectory.task_id)} · session {_text(trajectory.session_id)} · '
        f"{trajectory.screen.width}×{trajectory.screen.height} {_text(trajectory.platform)} · "
        f"{len(trajectory.traj)} steps · ended by {_text(trajectory.end_reason)}</div>{steps}</details>"
    )


def render_viewer(trajectories: Sequence[Trajectory], title: str = "demotrace dataset") -> str:
    """The whole page; image paths stay relative, so it works wherever the dataset folder is copied."""
    episodes = "".join(_episode(trajectory, index == 0) for index, trajectory in enumerate(trajectories))
    steps = sum(len(trajectory.traj) for trajectory in trajectories)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{_text(title)}</h1><p class="meta">{len(trajectories)} episodes · {steps} steps</p>'
        f"{episodes}</body></html>\n"
    )
