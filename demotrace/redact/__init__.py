"""Safeguards: sensitive text is found and replaced in memory, before anything is written.

Typed text: ``text`` (whole strings) and ``typing_burst`` (live typing, held per burst), over the
``detectors`` (one class per sensitive type). Screens: ``scrubber`` runs the pipeline, from ``regions``
(what changed) through ``ocr`` (the engine, the only I/O) and ``lines`` to ``screen`` (which words to
cover), and ``paint`` blacks the boxes out.
"""
