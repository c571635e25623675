"""``python -m batchload``: the same as the ``batchload`` console script."""

import sys

from batchload.cli import main

if __name__ == "__main__":
    sys.exit(main())
