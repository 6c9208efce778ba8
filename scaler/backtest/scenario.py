"""What is replayed: a trace's arrivals per minute, the replica capacity and the warmup.

docs/BACKTEST.md: the simulation runs at 1-minute steps; a coarser bucket's arrivals are spread
evenly over its minutes (a finer one's are summed). One replica serves ``c`` requests per minute;
by default ``c`` is set so that the trace's busiest minute needs ``peak_replicas`` replicas.

Causality: everything a policy can see at minute t - ``observed``, :meth:`Scenario.history` and
the world's arrivals and backlog before t - is a function of the raw trace before t only. So
collection gaps are found with a past-only rule (:func:`forecasting.cleaning.trailing_gaps`) and
filled from the past (:func:`fill_from_past`), never interpolated towards the sample after them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from forecasting.cleaning import GapPolicy, runs, trailing_gaps
from forecasting.types import FloatArray, Series

MINUTE = 60
BoolArray = npt.NDArray[np.bool_]


class ScenarioError(ValueError):
    """The trace or the flags cannot make a scenario; the message names the culprit."""


@dataclass(frozen=True)
class Scenario:
    """A trace at 1-minute steps; minute ``t`` covers ``[start + 60 t, start + 60 (t + 1))``."""

    name: str
    start: float
    """Unix seconds of minute 0."""
    arrivals: FloatArray
    """Requests arriving in each minute (>= 0): the simulated world. Where the trace has no data
    (a missing row, a collection gap) filled from the past (:func:`fill_from_past`), or 0."""
    observed: BoolArray
    """False where the scaler's metrics would have shown nothing: a missing row, or a collection
    gap as it could be told at the time. Where True, ``arrivals`` is the raw trace."""
    capacity: float
    """``c``: requests one replica serves per minute."""
    warmup_minutes: int
    """Minutes before the evaluation window: used to fit and to reach a steady state only."""
    filled_buckets: int = 0
    """Trace buckets that were collection gaps or missing, filled from the past."""
    skipped_minutes: int = 0
    """Minutes of the trace before minute 0, not replayed: a long trace is scored on its last
    ``--eval-span`` only (:func:`last_span`)."""
    key: str = field(default="", compare=False)
    """Content hash of arrivals and observed (cache key for fits)."""

    def __post_init__(self) -> None:
        if not self.key:
            digest = hashlib.sha1(self.arrivals.tobytes() + self.observed.tobytes()).hexdigest()
            object.__setattr__(self, "key", f"{self.start:.0f}-{digest[:16]}")

    @property
    def minutes(self) -> int:
        return int(self.arrivals.shape[0])

    @property
    def demand(self) -> FloatArray:
        """Arrivals in replica units: ``a(t) / c``."""
        return self.arrivals / self.capacity

    @property
    def window(self) -> slice:
        """The evaluation window: every minute after the warmup."""
        return slice(self.warmup_minutes, self.minutes)

    def history(self, stop: int, start: int = 0) -> Series:
        """Arrivals per minute of minutes ``[start, stop)`` as the scaler's metrics show them:
        the raw trace, NaN where nothing was observed (a missing row or a collection gap)."""
        start = max(0, start)
        values = np.where(self.observed[start:stop], self.arrivals[start:stop], np.nan)
        return Series(self.start + start * MINUTE, MINUTE, values)


def per_minute(series: Series) -> tuple[FloatArray, BoolArray]:
    """Arrivals per minute from any regular bucket step, and which minutes had data.

    The cumulative count is linear inside a bucket, so a 10-minute bucket of 500 requests gives
    50 per minute and a 30-second step's pairs are summed. Minutes past the last whole one are
    dropped.
    """
    values = series.values
    finite = np.isfinite(values)
    step = series.step_seconds
    n_minutes = int(len(series) * step // MINUTE)
    cum = np.concatenate([[0.0], np.cumsum(np.where(finite, np.maximum(values, 0.0), 0.0))])
    edges = np.arange(n_minutes + 1, dtype=np.float64) * MINUTE / step
    counts = np.diff(np.interp(edges, np.arange(len(series) + 1, dtype=np.float64), cum))
    first = np.floor(edges[:-1] + 1e-9).astype(np.int64)
    last = np.minimum(np.ceil(edges[1:] - 1e-9).astype(np.int64) - 1, len(series) - 1)
    missing = np.concatenate([[0], np.cumsum(~finite)])
    observed = (missing[last + 1] - missing[first]) == 0
    return np.maximum(counts, 0.0), observed


def unseen_buckets(series: Series) -> BoolArray:
    """Buckets the scaler would have had no sample for: missing rows and collection gaps.

    A run of zeros amid traffic (../shared/data: ServeGen m-small has 37 such 10-minute
    buckets) is the collector losing data, not demand vanishing. Each bucket is judged from the
    trace up to it (:func:`forecasting.cleaning.trailing_gaps`), never from later buckets.
    """
    gaps = trailing_gaps(series.values, step_seconds=series.step_seconds, policy=GapPolicy())
    return gaps | ~np.isfinite(series.values)


def fill_from_past(values: FloatArray, unseen: BoolArray, *,
                   step_seconds: int) -> tuple[FloatArray, int]:
    """The world's arrivals where the trace shows none, and how many buckets were filled.

    Replayed as zero, a collection gap would make every policy that follows demand scale down
    into it and be punished by the traffic "coming back" - an artefact of the trace. Each run
    of unseen buckets takes the same time one day earlier, scaled by the level of the hour
    before the run over that hour a day earlier (so a gap on the morning ramp ramps), or that
    level alone without a day before. Only earlier buckets are used: every policy sees the
    world's backlog, so a fill reaching for the bucket after the gap (interpolation) would let
    the future change decisions made during it. Unseen buckets before any data replay as 0.
    """
    out = np.where(unseen, np.nan, np.asarray(values, dtype=np.float64))
    day, hour = max(1, round(86400 / step_seconds)), max(1, round(3600 / step_seconds))
    filled = 0
    for start, stop in runs(unseen):
        if start == 0:
            out[:stop] = 0.0
            continue
        filled += stop - start
        level = float(np.mean(out[max(0, start - hour) : start]))
        then = float(np.mean(out[start - day - hour : start - day])) if start >= day + hour else 0.0
        if then <= 0:
            out[start:stop] = level
            continue
        for lo in range(start, stop, day):  # a run longer than a day repeats its first day
            hi = min(stop, lo + day)
            out[lo:hi] = out[lo - day : hi - day] * (level / then if lo == start else 1.0)
    return out, filled


def scenario_from_series(
    series: Series,
    *,
    name: str,
    warmup_seconds: float,
    peak_replicas: int = 20,
    capacity: float | None = None,
    fill: bool = True,
    warmup_text: str | None = None,
    warmup_flag: str = "--warmup",
) -> Scenario:
    """A scenario from a trace's requests per bucket (flags validated, errors name them).

    ``fill``: collection gaps and missing rows are missing data to the policies and filled from
    the past in the world (:func:`unseen_buckets`, :func:`fill_from_past`); otherwise a gap
    replays as zero arrivals the scaler sees, and a missing row as zero arrivals it cannot see.
    ``warmup_text``: the flag as the user wrote it, for the error message; ``warmup_flag``: its
    name (``prewarm demo`` calls its warmup ``--history``).
    """
    filled, world = 0, series
    if fill:
        unseen = unseen_buckets(series)
        values, filled = fill_from_past(series.values, unseen, step_seconds=series.step_seconds)
        world = Series(series.start, series.step_seconds, values)
        series = Series(series.start, series.step_seconds, np.where(unseen, np.nan, series.values))
    arrivals, _ = per_minute(world)
    _, observed = per_minute(series)
    if arrivals.shape[0] < 2:
        raise ScenarioError(f"--trace {name}: needs at least 2 minutes of data, has {arrivals.shape[0]}")
    peak = float(arrivals.max())
    if capacity is None:
        if peak_replicas < 1:
            raise ScenarioError(f"--peak-replicas {peak_replicas}: must be >= 1")
        if peak <= 0:
            raise ScenarioError(f"--trace {name}: no arrivals at all; pass --capacity to replay it")
        capacity = peak / peak_replicas
    if not capacity > 0:
        raise ScenarioError(f"--capacity {capacity:g}: must be > 0 requests per minute")
    warmup = round(warmup_seconds / MINUTE)
    if warmup < 0 or warmup >= arrivals.shape[0]:
        span = arrivals.shape[0] / 60.0
        shown = warmup_text or f"{warmup_seconds / 3600:g}h"
        raise ScenarioError(f"{warmup_flag} {shown}: must be shorter than the trace ({span:.4g}h of "
                            f"data); pass e.g. {warmup_flag} {max(1, int(span * 30))}m")
    return Scenario(name, series.start, arrivals, observed, float(capacity), warmup,
                    filled_buckets=filled)


def last_span(scenario: Scenario, span_minutes: int | None, run_in_minutes: int) -> Scenario:
    """The scenario scored on its last ``span_minutes`` only, replayed from ``run_in_minutes``
    (or the warmup, if longer) before them; the same scenario when that skips nothing.

    Why: every policy is simulated minute by minute, so a backtest's cost grows with the trace.
    Scored on a bounded span, a trace of any length costs at most what span + run-in cost.
    The run-in is what a fit sees (21 days) and covers the tuner's two-week replay and its
    week of measured shares, so each policy enters the span knowing what a replay from the
    trace's first minute would have let it know. ``capacity`` stays the whole trace's: ``c`` is
    set by the trace's busiest minute, wherever it lies. ``span_minutes=None`` scores everything.
    """
    if span_minutes is None:
        return scenario
    window = scenario.minutes - span_minutes
    start = window - max(scenario.warmup_minutes, run_in_minutes)
    if window <= scenario.warmup_minutes or start <= 0:
        return scenario
    return replace(scenario, start=scenario.start + start * MINUTE, arrivals=scenario.arrivals[start:],
                   observed=scenario.observed[start:], warmup_minutes=window - start,
                   skipped_minutes=scenario.skipped_minutes + start, key="")
