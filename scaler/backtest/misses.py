"""Where a run's late requests came from, and whether the history before them showed them.

A missed SLO in a backtest raises one question first: could any policy without hindsight have
known? So the late minutes of the scored window are grouped into episodes (late minutes less
than :data:`GAP_MINUTES` apart are one), and each episode's peak demand is set against what the
trace had shown before the episode began:

- ``beyond-history``: the peak is over :data:`BEYOND` times the highest demand of any earlier
  minute. No history-based policy sizes for it; only a standing reserve would have served it.
- ``beyond-time-of-day``: within the history, but over :data:`BEYOND` times the highest demand
  within :data:`TIME_OF_DAY_MINUTES` of this time of day on each of the :data:`DAYS` days
  before: a burst at an hour that had not seen one this large (an unscheduled job, a random
  spike). A margin covers it only by paying for it at every hour.
- ``within-history``: the history showed demand this high at this time of day. These late
  requests are the policy's to answer for (its forecast or its margin fell short).

Pure functions of the replayed demand and the run's late requests per minute; the backtest's
``auto`` block and its table report them (docs/BACKTEST.md, "Where the late requests came from").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

GAP_MINUTES = 30
"""Late minutes closer than this are one episode: one burst, served late on and off."""
BEYOND = 1.2
"""An episode's peak over this multiple of what came before it is beyond it: about what the
larger self-tuned factors (1.2-1.35) hold above the forecast."""
TIME_OF_DAY_MINUTES = 30
"""How far from the episode's time of day an earlier day's demand still counts as "this time"."""
DAYS = 7
"""Earlier days looked at for the time of day: a week, every weekday once."""
MINUTES_PER_DAY = 1440
KINDS = ("beyond-history", "beyond-time-of-day", "within-history")


@dataclass(frozen=True)
class Episode:
    """A stretch of late minutes, and how its peak compares with what came before it."""

    start: int
    """First late minute (index into the replay)."""
    minutes: int
    """From the first late minute to the last, inclusive."""
    late: float
    """Late requests in it."""
    share: float
    """Its share of the window's late requests."""
    peak: float
    """Highest demand (replicas) over its minutes."""
    vs_history: float | None
    """``peak`` / the highest demand before the episode's rise (before :data:`GAP_MINUTES`
    ahead of its first late minute; None: no demand then)."""
    vs_time_of_day: float | None
    """``peak`` / the highest demand near this time of day on the :data:`DAYS` days before (None:
    no earlier day, or nothing but zeros there)."""
    kind: str
    """One of :data:`KINDS`."""


def late_episodes(demand: FloatArray, late: FloatArray, window: slice) -> list[Episode]:
    """The episodes of late minutes in ``window``, most late requests first.

    ``demand`` (replicas) and ``late`` (requests) are per minute over the whole replay; only
    minutes before an episode (and before its rise: :data:`GAP_MINUTES` before its first late
    minute) count as its history, so the verdict is one a user could have reached then.
    """
    start, stop = window.start or 0, len(late) if window.stop is None else window.stop
    minutes = start + np.flatnonzero(late[start:stop] > 0)
    total = float(late[start:stop].sum())
    if minutes.size == 0 or total <= 0:
        return []
    # Split where two late minutes are GAP_MINUTES or more apart.
    cuts = np.flatnonzero(np.diff(minutes) >= GAP_MINUTES) + 1
    out = []
    for run in np.split(minutes, cuts):
        first, last = int(run[0]), int(run[-1])
        peak = float(np.max(demand[first:last + 1]))
        count = float(late[first:last + 1].sum())
        # The history ends GAP_MINUTES before the first late minute: a burst's own rise is not
        # its history.
        vs_history = _ratio(peak, demand[:max(first - GAP_MINUTES, 0)])
        vs_time = _ratio(peak, _same_time_before(demand, first, last))
        out.append(Episode(first, last - first + 1, count, count / total, peak, vs_history, vs_time,
                           _kind(vs_history, vs_time)))
    return sorted(out, key=lambda e: -e.late)


def by_kind(episodes: list[Episode]) -> dict[str, float]:
    """Share of the late requests per kind (every kind listed, 0 where none)."""
    return {kind: sum(e.share for e in episodes if e.kind == kind) for kind in KINDS}


def _same_time_before(demand: FloatArray, first: int, last: int) -> FloatArray:
    """Demand within TIME_OF_DAY_MINUTES of ``first..last``'s time of day on each of the DAYS
    days before (the parts that fall before the replay's start are left out)."""
    parts = []
    for day in range(1, DAYS + 1):
        lo = first - day * MINUTES_PER_DAY - TIME_OF_DAY_MINUTES
        hi = last - day * MINUTES_PER_DAY + TIME_OF_DAY_MINUTES + 1
        if hi > 0:
            parts.append(demand[max(lo, 0):hi])
    return np.concatenate(parts) if parts else np.zeros(0)


def _ratio(peak: float, before: FloatArray) -> float | None:
    highest = float(np.nanmax(before)) if before.size and np.isfinite(before).any() else 0.0
    return peak / highest if highest > 0 else None


def _kind(vs_history: float | None, vs_time_of_day: float | None) -> str:
    if vs_history is None or vs_history > BEYOND:
        return "beyond-history"
    if vs_time_of_day is None or vs_time_of_day > BEYOND:
        return "beyond-time-of-day"
    return "within-history"
