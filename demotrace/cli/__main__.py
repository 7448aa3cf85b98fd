"""``python -m demotrace.cli``: the `demotrace` command, as the demo and the tests start it."""

from demotrace.cli.main import main

main()
