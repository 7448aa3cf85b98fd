"""Pure transforms from recorded events to training data: reduce → episodes → privacy → quality → export.

Runs without X, a server or a display; ``build`` and the modules it drives (``options``: the key,
``images``, ``write``) are the only ones that touch files (the exporters' shard writers and
``describe``'s HTTP calls are the edges they drive).
"""

from demotrace.dataset.build import build_dataset
from demotrace.dataset.describe import DescriberConfig
from demotrace.dataset.episodes import Episode, split_episodes
from demotrace.dataset.options import ALL_FORMATS, ExportFormat, ShardLimits
from demotrace.dataset.privacy import KnownNames, Pseudonyms
from demotrace.dataset.quality import QualityConfig
from demotrace.dataset.reduce import reduce_events
from demotrace.dataset.write import BuildSummary

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
