"""Trajectories → Agent Data Protocol (ADP) records (pure; the caller writes OUT/adp/trajectories.jsonl).

One record per episode: ``{"id", "content": [...], "details": {...}}``. ``content`` is the episode as
an ordered exchange: the instruction as a text observation from the user, then for every step the screen
before it (an image observation from the environment, when a frame exists) and the pyautogui code the
agent should produce (a code action). Image paths are relative to the dataset folder. ADP's ``details``
is a str → str map, so numbers are written as text there.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from demotrace.dataset.export.agentnet import Trajectory, TrajectoryStep

ADP_DIR = "adp"
ADP_FILE = "trajectories.jsonl"


class TextObservation(msgspec.Struct, tag="text_observation", tag_field="class_"):
    content: str
    source: str


class ImageObservation(msgspec.Struct, tag="image_observation", tag_field="class_"):
    content: str  # path of the image, relative to the dataset folder
    source: str
    annotations: None = None


class CodeAction(msgspec.Struct, tag="code_action", tag_field="class_"):
    language: str
    content: str
    description: str | None


ContentItem = TextObservation | ImageObservation | CodeAction


class AdpTrajectory(msgspec.Struct):
    id: str
    content: list[ContentItem]
    details: dict[str, str]


def _step_description(step: TrajectoryStep) -> str:
    """What the step does, where: 'click in XTerm — bash'."""
    where = step.value.app or "an unnamed app"
    if step.value.window:
        where += f" — {step.value.window}"
    return f"{step.value.action} in {where}"


def trajectory_to_adp(trajectory: Trajectory) -> AdpTrajectory:
    content: list[ContentItem] = [TextObservation(content=trajectory.instruction, source="user")]
    for step in trajectory.traj:
        if step.image is not None:
            content.append(ImageObservation(content=step.image, source="environment"))
        content.append(
            CodeAction(language="python", content=step.value.code, description=_step_description(step))
        )
    details = {
        "source": "demotrace",
        "session_id": trajectory.session_id,
        "device_id": trajectory.device_id,
        "platform": trajectory.platform,
        "screen_width": str(trajectory.screen.width),
        "screen_height": str(trajectory.screen.height),
        "instruction_source": trajectory.instruction_source,
        "end_reason": trajectory.end_reason,
        "start_wall": repr(trajectory.start_wall),
        "end_wall": repr(trajectory.end_wall),
        "steps": str(len(trajectory.traj)),
        "coordinates": "normalised to [0, 1] of the screen",
    }
    return AdpTrajectory(id=trajectory.task_id, content=content, details=details)


def adp_jsonl(trajectories: Sequence[Trajectory]) -> bytes:
    encoder = msgspec.json.Encoder()
    return b"".join(encoder.encode(trajectory_to_adp(trajectory)) + b"\n" for trajectory in trajectories)
