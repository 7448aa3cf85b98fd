"""Episodes → OpenCUA/AgentNet-style trajectory records (pure; the caller writes files).

Each step's ``value.code`` is pyautogui with coordinates normalised to [0, 1] by the screen size, so
a model trained on it is resolution independent; ``action_detail`` repeats the raw pixels, keys and
text so consumers need not parse code.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from demotrace.dataset.episodes import EndReason, Episode, Gap, InstructionSource
from demotrace.model import Action, ActionKind, PageElement

_DECIMALS = 4

_CLICK_FUNCTIONS: dict[str, str] = {
    "click": "click",
    "double_click": "doubleClick",
    "triple_click": "tripleClick",
    "right_click": "rightClick",
    "middle_click": "middleClick",
}


class ScreenSize(msgspec.Struct):
    width: int
    height: int


class ImageRegion(msgspec.Struct):
    """The part of the screen an image shows, in screen pixels (image pixel = screen pixel - offset)."""

    left: int
    top: int
    width: int
    height: int


class ImageRef(msgspec.Struct):
    path: str  # relative to the dataset directory, e.g. "images/<frame_id>.webp"
    region: ImageRegion


class ActionDetail(msgspec.Struct):
    """The action in raw screen pixels, keys and text. ``keys`` on a mouse action: modifiers held."""

    kind: ActionKind
    x: int | None
    y: int | None
    end_x: int | None
    end_y: int | None
    text: str | None
    keys: list[str] | None
    dx: int
    dy: int
    t: float  # recorder clock (seconds): t_end - t is how long the action took
    t_end: float
    # In a browser page (from the browser extension, where the policy allows): the page's URL (origin and
    # path) and the element clicked or typed into (role, accessible name, input type, box in pixels).
    url: str | None = None
    element: PageElement | None = None


class StepValue(msgspec.Struct):
    code: str
    action: ActionKind
    app: str | None
    window: str | None
    ts: float  # wall time (Unix seconds) the action started


class TrajectoryStep(msgspec.Struct):
    index: int
    image: str | None
    value: StepValue
    action_detail: ActionDetail
    image_region: ImageRegion | None


class Trajectory(msgspec.Struct):
    task_id: str
    instruction: str
    session_id: str
    screen: ScreenSize
    platform: str
    instruction_source: InstructionSource
    end_reason: EndReason
    start_wall: float
    end_wall: float
    traj: list[TrajectoryStep]
    device_id: str = ""  # as in the header: a pseudonym in built datasets, to group by contributor
    gaps: list[Gap] = []  # spans inside a marked task in which nothing was captured (episodes.Gap)


def _normalised(value: int, size: int) -> float:
    fraction = value / size if size > 0 else 0.0
    return round(min(1.0, max(0.0, fraction)), _DECIMALS)


def _point(x: int | None, y: int | None, screen: ScreenSize) -> str:
    return f"x={_normalised(x or 0, screen.width)}, y={_normalised(y or 0, screen.height)}"


def _holding(modifiers: list[str] | None, lines: list[str]) -> list[str]:
    """Wrap mouse code in key holds for modifiers pressed during it (shift-click, ctrl-drag)."""
    if not modifiers:
        return lines
    downs = [f"pyautogui.keyDown({key!r})" for key in modifiers]
    ups = [f"pyautogui.keyUp({key!r})" for key in reversed(modifiers)]
    return [*downs, *lines, *ups]


def action_code(action: Action, screen: ScreenSize) -> str:
    """The pyautogui code that repeats ``action``, coordinates normalised to [0, 1]."""
    at = _point(action.x, action.y, screen)
    if action.kind in _CLICK_FUNCTIONS:
        return "\n".join(_holding(action.keys, [f"pyautogui.{_CLICK_FUNCTIONS[action.kind]}({at})"]))
    if action.kind == "drag":
        to = _point(action.end_x, action.end_y, screen)
        lines = [f"pyautogui.moveTo({at})", f"pyautogui.dragTo({to}, button='left')"]
        return "\n".join(_holding(action.keys, lines))
    if action.kind == "scroll":
        lines = []
        if action.dy:
            lines.append(f"pyautogui.scroll({action.dy}, {at})")
        if action.dx:
            lines.append(f"pyautogui.hscroll({action.dx}, {at})")
        return "\n".join(lines)
    if action.kind == "type":
        return f"pyautogui.write(message={action.text or ''!r})"
    keys = action.keys or []
    if action.kind == "press":
        return f"pyautogui.press({keys[0] if keys else ''!r})"
    return f"pyautogui.hotkey({', '.join(repr(key) for key in keys)})"


def action_detail(action: Action) -> ActionDetail:
    return ActionDetail(
        kind=action.kind,
        x=action.x,
        y=action.y,
        end_x=action.end_x,
        end_y=action.end_y,
        text=action.text,
        keys=action.keys,
        dx=action.dx,
        dy=action.dy,
        t=action.t,
        t_end=action.t_end,
        url=action.window.url if action.window is not None else None,
        element=action.element,
    )


def episode_to_trajectory(episode: Episode, image_for: Callable[[str], ImageRef | None]) -> Trajectory:
    """One trajectory record; ``image_for(frame_id)`` says where a step's pre-action frame was stored."""
    screen = ScreenSize(width=episode.header.screen_width, height=episode.header.screen_height)
    steps = []
    for index, action in enumerate(episode.actions):
        image = image_for(action.frame_id) if action.frame_id is not None else None
        window = action.window
        steps.append(
            TrajectoryStep(
                index=index,
                image=image.path if image is not None else None,
                value=StepValue(
                    code=action_code(action, screen),
                    action=action.kind,
                    app=window.app if window is not None else None,
                    window=window.title if window is not None else None,
                    ts=action.wall,
                ),
                action_detail=action_detail(action),
                image_region=image.region if image is not None else None,
            )
        )
    return Trajectory(
        task_id=episode.task_id,
        instruction=episode.instruction,
        session_id=episode.session_id,
        screen=screen,
        platform=episode.header.platform,
        instruction_source=episode.instruction_source,
        end_reason=episode.end_reason,
        start_wall=episode.start_wall,
        end_wall=episode.end_wall,
        traj=steps,
        device_id=episode.header.device_id,
        gaps=list(episode.gaps),
    )


_trajectory_decoder = msgspec.json.Decoder(Trajectory)


def decode_trajectories(jsonl: bytes) -> list[Trajectory]:
    """Parse trajectories.jsonl back into records (raises msgspec.ValidationError on a bad line)."""
    return [_trajectory_decoder.decode(line) for line in jsonl.splitlines() if line.strip()]


def actions_from_trajectory(trajectory: Trajectory) -> list[Action]:
    """The actions of a trajectory again, from its ``action_detail`` (window: app and title only, so None;
    path and frame are not exported)."""
    return [
        Action(
            kind=detail.kind,
            t=detail.t,
            t_end=detail.t_end,
            wall=step.value.ts,
            x=detail.x,
            y=detail.y,
            end_x=detail.end_x,
            end_y=detail.end_y,
            text=detail.text,
            keys=detail.keys,
            dx=detail.dx,
            dy=detail.dy,
            element=detail.element,
        )
        for step in trajectory.traj
        for detail in [step.action_detail]
    ]
