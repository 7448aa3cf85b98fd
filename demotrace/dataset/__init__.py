"""Pure transforms from recorded events to training data: reduce → episodes → privacy → quality → export.

Runs without X, a server or a display; ``build`` is the only module that touches files (the exporters'
shard writers and ``describe``'s HTTP calls are the edges it drives).
"""

from demotrace.dataset.build import ALL_FORMATS, BuildSummary, ExportFormat, ShardLimits, build_dataset
from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.episodes import Episode, split_episodes
from demotrace.dataset.privacy import KnownNames, Pseudonyms
from demotrace.dataset.quality import QualityConfig
from demotrace.dataset.reduce import reduce_events

__all__ = [
    "ALL_FORMATS",
    "BuildSummary",
    "DescriberConfig",
    "Episode",
    "ExportFormat",
    "KnownNames",
    "Pseudonyms",
    "QualityConfig",
    "ShardLimits",
    "build_dataset",
    "reduce_events",
    "split_episodes",
]
