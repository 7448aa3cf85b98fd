"""On-device capture: input hooks, window focus and frames, written to the spool.

Entry points: :class:`Recorder` (``run(stop)``) and :func:`record_until_signal` (what ``demotrace
record`` calls). Nothing here imports pynput or touches X until a recording starts.
"""

from demotrace.capture.recorder import LatencyStats, Recorder, RecorderError, record_until_signal

__all__ = ["LatencyStats", "Recorder", "RecorderError", "record_until_signal"]
