"""``python -m batchload``: the same as the ``batchload`` console script."""

from batchload.cli import main

if __name__ == "__main__":
    main()
