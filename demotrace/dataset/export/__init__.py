"""Export formats for episodes: AgentNet-style trajectory JSONL and an HTML viewer."""

from demotrace.dataset.export.agentnet import Trajectory, action_code, episode_to_trajectory
from demotrace.dataset.export.viewer import render_viewer

__all__ = ["Trajectory", "action_code", "episode_to_trajectory", "render_viewer"]
