"""On-device capture: input hooks, window focus and frames, written to a sink it is handed (the spool).

Entry points: :class:`~demotrace.capture.recorder.Recorder` (``run(stop)``) and
:func:`~demotrace.capture.recorder.record_until_signal` (what ``demotrace record`` calls). Nothing here
imports pynput or touches X until a recording starts.
"""
