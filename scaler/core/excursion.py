"""How far demand may stray above its level now: the signal the SLO margin's ``spread`` scales.

Bursts come in spells (an API client's batch run, a launch) and at times of day (an evening
peak), so two looks back say whether the next burst is likely: the last few hours, and this time
of day on the last days - where it takes two days to make a time of day bursty
(:data:`SEASONAL_RECURRENCE`). :func:`excursion` is what one decision sees; :func:`excursions`
the same for every step of a replayed history at once (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

FloatArray = npt.NDArray[np.float64]

EXCURSION_SECONDS = 3 * 3600.0
"""Window of the recent excursion: bursts cluster in spells of hours (an API client's batch run,
a launch), so the last few hours say whether the next burst is likely."""
SEASONAL_DAYS = 7
"""Past days whose excursion at this time of day counts (a week: every weekday once)."""
SEASONAL_RECURRENCE = 2
"""Past days that must have strayed as far at this time of day: the seasonal excursion is the
second largest of the :data:`SEASONAL_DAYS` days', not the largest. One day's burst is an event;
two make a time of day bursty. With the largest, one burst widened the margin at its time of
day for a week: on ServeGen m-small at 10m the tuner held 2x the demand for days after a burst
that did not come back at that hour (docs/BACKTEST.md, "A time of day is bursty on two days")."""
SEASONAL_SLACK_SECONDS = 3600.0
"""How far around this time of day a past day's excursion counts (evening peaks drift)."""


def excursion(history: FloatArray, *, step_seconds: float, lead_steps: int) -> float:
    """How far demand may stray above its level now: the larger of the recent spell (``max -
    mean`` over the last :data:`EXCURSION_SECONDS`) and the same at this time of day on the last
    :data:`SEASONAL_DAYS` days, over the lead window +- :data:`SEASONAL_SLACK_SECONDS`: the
    :data:`SEASONAL_RECURRENCE`-th largest of those days' (none with fewer days).

    ``history`` ends with the last completed step before the decision; missing steps count 0
    (a wider margin, never a narrower one). Demand units. :func:`excursions` computes the same
    for every replayed step at once (a test keeps the two equal).
    """
    x = np.nan_to_num(np.asarray(history, dtype=np.float64), nan=0.0)
    return Running(step_seconds=step_seconds, lead_steps=lead_steps).at(x, x.shape[0])


class Running:
    """:func:`excursion` at each step of a history that grows one step at a time (the backtest's
    decisions, every minute of a long trace). Each past day's window is measured once, when it is
    complete, and kept, instead of the last week being read again at every step. :func:`excursion`
    is one call of it with nothing kept.
    """

    def __init__(self, *, step_seconds: float, lead_steps: int) -> None:
        self.spell = max(1, int(EXCURSION_SECONDS // step_seconds))
        self.per_day = int(86400 // step_seconds)
        self.slack = int(SEASONAL_SLACK_SECONDS // step_seconds)
        self.lead = lead_steps
        self._days: dict[int, float] = {}
        """Spread of the window around step ``j`` (may be negative: a window clipped at the start)."""

    def at(self, x: FloatArray, n: int) -> float:
        """``excursion(x[:n])`` for a history ``x`` whose first ``n`` steps are final and whose
        missing steps are already 0."""
        best = _spread(x[max(0, n - self.spell):n])
        days: list[float] = []
        for d in range(1, SEASONAL_DAYS + 1):
            j = n - d * self.per_day
            hi = j + self.lead + self.slack
            if hi <= 0:
                break
            spread = self._days.get(j)
            if spread is None:
                spread = _spread(x[max(0, j - self.slack):min(hi, n)])
                if hi <= n:  # complete: no later step sees it differently
                    self._days[j] = spread
            days.append(spread)
        if len(self._days) > 2 * (SEASONAL_DAYS + 1) * self.per_day:  # forget what no later step reads
            oldest = n - SEASONAL_DAYS * self.per_day
            self._days = {j: v for j, v in self._days.items() if j >= oldest}
        return max(best, _recurring(days))


def _spread(window: FloatArray) -> float:
    return float(window.max() - window.mean()) if window.size else 0.0


def _recurring(days: list[float]) -> float:
    """The largest spread at least :data:`SEASONAL_RECURRENCE` of the past ``days`` reached (0
    with fewer days)."""
    return sorted(days)[-SEASONAL_RECURRENCE] if len(days) >= SEASONAL_RECURRENCE else 0.0


def excursions(demand: FloatArray, *, step_seconds: float, lead_steps: int) -> FloatArray:
    """:func:`excursion` as the decision at every step ``i`` saw it (from ``demand[:i]``)."""
    x = np.nan_to_num(demand, nan=0.0)
    n = x.shape[0]
    if n == 0:
        return x
    prev = np.concatenate([[0.0], x[:-1]])
    spell = max(1, int(EXCURSION_SECONDS // step_seconds))
    # Trailing windows over prev end at i - 1; the first steps see fewer than ``spell``.
    head = np.minimum(np.arange(n), spell)
    csum = np.concatenate([[0.0], np.cumsum(prev)])
    mean = (csum[1:] - csum[np.maximum(0, np.arange(1, n + 1) - np.maximum(head, 1))]) / np.maximum(head, 1)
    out = np.where(head > 0, trailing(maximum_filter1d, prev, spell) - mean, 0.0)
    out[0] = 0.0
    per_day = int(86400 // step_seconds)
    slack = int(SEASONAL_SLACK_SECONDS // step_seconds)
    width = lead_steps + 2 * slack
    days = []
    # g[j]: max - mean over x[j - slack : j + lead + slack], windows clipped at the trace start.
    j = np.arange(n)
    lo, hi = np.maximum(j - slack, 0), np.minimum(j + lead_steps + slack, n)
    xsum = np.concatenate([[0.0], np.cumsum(x)])
    gmax = trailing(maximum_filter1d, x, width)[np.maximum(hi - 1, 0)]
    g = gmax - (xsum[hi] - xsum[lo]) / np.maximum(hi - lo, 1)
    for d in range(1, SEASONAL_DAYS + 1):
        shift = d * per_day
        if shift >= n + slack:
            break
        src = j - shift
        ok = (src + lead_steps + slack > 0) & (src + lead_steps + slack <= n)
        vals = np.where(ok, g[np.clip(src, 0, n - 1)], 0.0)
        # Windows that start before the trace: recompute their clipped spread the slow way.
        for i in np.flatnonzero(ok & (src - slack < 0)):
            vals[i] = _spread(x[0:src[i] + lead_steps + slack])
        days.append(vals)
    if len(days) >= SEASONAL_RECURRENCE:
        out = np.maximum(out, np.sort(np.vstack(days), axis=0)[-SEASONAL_RECURRENCE])
    return np.maximum(out, 0.0)


def trailing(fn: Callable[..., FloatArray], x: FloatArray, size: int) -> FloatArray:
    """``fn`` (a scipy 1-d rank filter) over the trailing window ``[i - size + 1, i]`` (last axis)."""
    if size <= 1:
        return x
    # "nearest" pads the start with the first value; scipy's default reflects, which would let
    # the first steps see values after them.
    return fn(x, size=size, origin=(size - 1) // 2, mode="nearest", axis=-1)
