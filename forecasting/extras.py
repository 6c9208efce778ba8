"""The `plot` extra (matplotlib, tqdm): imported only where a command uses it.

``pip install prewarm`` (and the daemon image) has neither, and runs ``serve`` and every command
without ``--plot``. A plot without matplotlib stops with the extra to install; progress bars without
tqdm are silently left out.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

PLOT_EXTRA = "prewarm[plot]"


def missing_plot(command: str, flag: str = "--plot") -> NoReturn:
    """Exit 2 (as a usage error does) saying which extra brings matplotlib."""
    print(f"prewarm {command}: error: {flag} needs matplotlib, which is not installed: "
          f"pip install '{PLOT_EXTRA}'", file=sys.stderr)
    raise SystemExit(2)


def need_plot(command: str, flag: str = "--plot") -> None:
    """Check up front, before minutes of work, that a plot can be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing_plot(command, flag)


def pyplot(command: str) -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    try:
        import matplotlib
    except ImportError:
        missing_plot(command)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class _NoBar:
    """tqdm's surface that the commands use, doing nothing."""

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self._iterable = iterable

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._iterable or ())

    def update(self, n: float | None = 1) -> None:
        return None


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm progress bar, or none when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar(iterable)
    return tqdm(iterable, **kwargs)
