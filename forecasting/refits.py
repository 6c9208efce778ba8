"""How often an offline replay refits: a budget of fits, so its cost does not grow with the trace.

Serve refits every 10 minutes; between refits ``update`` follows the level, and a refit only
re-estimates parameters on data that barely moved. An offline replay (``forecast-eval``, the
backtest) refits less often, because a fit is most of what a long replay costs. Every 6 hours,
or on a span too long for :data:`MAX_FITS` fits at that, the first of 8 and 12 hours and whole
days that keeps within them. E.g. 120 days: every 6 h (480 fits); a year: every 24 h (365).
"""

from __future__ import annotations

import math

DAY = 86400.0
INTERVALS = (6 * 3600.0, 8 * 3600.0, 12 * 3600.0, DAY)
"""Refit intervals tried in turn, in seconds; past the last, whole days."""
MAX_FITS = 480
"""Fits a replay makes at most by default: every 6 hours over 120 days."""


def refit_every(span_seconds: float) -> float:
    """The default refit interval, in seconds, over ``span_seconds`` of fitting (module docstring)."""
    for every in INTERVALS:
        if span_seconds / every <= MAX_FITS:
            return every
    return DAY * math.ceil(span_seconds / MAX_FITS / DAY)
