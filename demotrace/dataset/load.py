"""Read a built dataset back into actions (for comparisons, replay and tests)."""

from __future__ import annotations

from pathlib import Path

from demotrace.dataset.export.agentnet import actions_from_trajectory, decode_trajectories
from demotrace.model import Action


def load_actions(trajectories_jsonl: Path) -> list[Action]:
    """Every step of every episode, in file order, as pixel-space actions."""
    trajectories = decode_trajectories(trajectories_jsonl.read_bytes())
    return [action for trajectory in trajectories for action in actions_from_trajectory(trajectory)]
