"""``uv run python -m benchmarks [--quick] [--only S,M,...]``: see :mod:`benchmarks.harness`."""

from benchmarks.harness import main

main()
