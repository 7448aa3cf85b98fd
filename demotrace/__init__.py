"""demotrace: record computer use where policy allows it, turn it into agent-training trajectories."""

__version__ = "0.1.0"
