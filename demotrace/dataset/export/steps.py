"""Trajectories → one flat record per step, carrying its episode's fields (pure).

The row shape shared by the step-per-row formats (Parquet, WebDataset): a consumer can shuffle steps
across episodes and still know which episode, instruction and screen each belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from demotrace.dataset.episodes import EndReason, InstructionSource
from demotrace.dataset.export.agentnet import ActionDetail, ImageRegion, Trajectory
from demotrace.model import ActionKind


class StepRecord(msgspec.Struct):
    task_id: str
    session_id: str
    device_id: str
    instruction: str
    instruction_source: InstructionSource
    end_reason: EndReason
    platform: str
    screen_width: int
    screen_height: int
    episode_start_wall: float
    episode_end_wall: float
    episode_steps: int
    step_index: int
    image_path: str | None  # relative to the dataset folder, e.g. "images/<id>.png"
    image_region: ImageRegion | None
    code: str
    action: ActionKind
    action_detail: ActionDetail
    app: str | None
    window: str | None
    ts: float


def step_records(trajectories: Iterable[Trajectory]) -> Iterator[StepRecord]:
    for trajectory in trajectories:
        for step in trajectory.traj:
            yield StepRecord(
                task_id=trajectory.task_id,
                session_id=trajectory.session_id,
                device_id=trajectory.device_id,
                instruction=trajectory.instruction,
                instruction_source=trajectory.instruction_source,
                end_reason=trajectory.end_reason,
                platform=trajectory.platform,
                screen_width=trajectory.screen.width,
                screen_height=trajectory.screen.height,
                episode_start_wall=trajectory.start_wall,
                episode_end_wall=trajectory.end_wall,
                episode_steps=len(trajectory.traj),
                step_index=step.index,
                image_path=step.image,
                image_region=step.image_region,
                code=step.value.code,
                action=step.value.action,
                action_detail=step.action_detail,
                app=step.value.app,
                window=step.value.window,
                ts=step.value.ts,
            )
