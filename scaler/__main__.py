"""The ``prewarm`` command (and ``python -m scaler``)."""

import signal
import sys
from collections.abc import Callable
from types import FrameType


class _Interrupts:
    """Remembers a Ctrl-C that reached the default handler, so a swallowed one still exits 130.

    CPython runs a signal's handler between bytecodes of whatever runs then. If that is a
    ``__del__`` or a library's bare ``except:`` during the imports, the KeyboardInterrupt is
    lost and the command runs to its end. Once in CI a backtest interrupted 0.15-0.3 s after
    its start exited 0; this is the likeliest way (it was not reproduced in 360 tries).
    """

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        raise KeyboardInterrupt


def run(main: Callable[[], int] | None = None) -> int:
    """The command line; Ctrl-C ends it with 130 and no traceback, also while it starts.

    ``main`` is the command (default :func:`scaler.cli.main`, imported here: the imports take
    about a second, and a Ctrl-C in them otherwise printed a KeyboardInterrupt traceback).
    """
    interrupts = _Interrupts()
    # Only over Python's own handler: a SIGINT ignored by the parent (``nohup cmd &``) stays ignored.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupts)
    try:
        if main is None:
            from scaler.cli import main as cli_main

            code = cli_main()
        else:
            code = main()
    except KeyboardInterrupt:
        return 130
    return 130 if interrupts.seen else code


if __name__ == "__main__":
    sys.exit(run())
