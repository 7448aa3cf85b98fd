"""Pure transforms from recorded events to training data: reduce → episodes → export.

Runs without X, a server or a display; ``build`` is the only module that touches files.
"""

from demotrace.dataset.build import BuildSummary, build_dataset
from demotrace.dataset.episodes import Episode, split_episodes
from demotrace.dataset.reduce import reduce_events

__all__ = ["BuildSummary", "Episode", "build_dataset", "reduce_events", "split_episodes"]
