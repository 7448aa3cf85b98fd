"""The one `demotrace` command: ``main.py`` builds it, one module per command group.

Kept empty so that ``python -m demotrace.cli.replay`` imports no more than the replay needs.
"""
