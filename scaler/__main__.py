"""The ``prewarm`` command (and ``python -m scaler``)."""

import sys


def run() -> int:
    """The command line; Ctrl-C ends it with 130 and no traceback, also while it starts."""
    try:
        # Imported here: the imports take about a second (numpy, statsmodels), and a Ctrl-C
        # in them otherwise printed a KeyboardInterrupt traceback.
        from scaler.cli import main

        return main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(run())
