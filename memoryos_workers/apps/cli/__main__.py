"""`python -m memoryos_workers.apps.cli`: the `memoryos` command without its console script."""

from memoryos_workers.apps.cli import main

main()
