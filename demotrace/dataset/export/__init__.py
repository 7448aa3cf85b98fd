"""Export formats for episodes: AgentNet-style trajectory JSONL (the canonical record), an HTML viewer,
and, from the same records, Parquet shards, WebDataset shards and Agent Data Protocol JSONL."""

from demotrace.dataset.export.adp import trajectory_to_adp
from demotrace.dataset.export.agentnet import Trajectory, action_code, episode_to_trajectory
from demotrace.dataset.export.steps import StepRecord, step_records
from demotrace.dataset.export.viewer import render_viewer

__all__ = [
    "StepRecord",
    "Trajectory",
    "action_code",
    "episode_to_trajectory",
    "render_viewer",
    "step_records",
    "trajectory_to_adp",
]
