"""What is replayed: a trace's arrivals per minute, the replica capacity and the warmup.

EVALUATION.md: the simulation runs at 1-minute steps; a coarser bucket's arrivals are spread
evenly over its minutes (a finer one's are summed). One replica serves ``c`` requests per minute;
by default ``c`` is set so that the trace's busiest minute needs ``peak_replicas`` replicas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from forecasting.cleaning import GapPolicy, mask_collection_gaps
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
    """Requests arriving in each minute (>= 0; a missing bucket counts 0 arrivals)."""
    observed: BoolArray
    """False where the trace has no data (a missing row): the scaler would have seen nothing."""
    capacity: float
    """``c``: requests one replica serves per minute."""
    warmup_minutes: int
    """Minutes before the evaluation window: used to fit and to reach a steady state only."""
    filled_buckets: int = 0
    """Trace buckets that were collection gaps or missing, filled by interpolation."""
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

    def history(self, stop: int) -> Series:
        """Arrivals per minute of minutes ``[0, stop)`` as the forecaster sees them (NaN = no data)."""
        values = np.where(self.observed[:stop], self.arrivals[:stop], np.nan)
        return Series(self.start, MINUTE, values)


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


def fill_gaps(series: Series) -> tuple[Series, int]:
    """Collection gaps and missing rows replaced by linear interpolation; how many buckets.

    A run of zeros amid traffic (:func:`forecasting.cleaning.mask_collection_gaps`, the rule
    the forecaster uses) is the collector losing data, not demand vanishing (../shared/data: ServeGen
    m-small has 37 such 10-minute buckets). Replayed as zero, every policy that follows demand
    would scale down into it and be punished by the real traffic coming back - an artefact of
    the trace, not of the cluster whose own metrics would have seen the traffic.
    """
    masked = mask_collection_gaps(series.values, step_seconds=series.step_seconds,
                                  policy=GapPolicy()).values
    missing = ~np.isfinite(masked)
    if not missing.any() or missing.all():
        return series, 0
    idx = np.arange(len(series), dtype=np.float64)
    filled = np.array(masked)
    filled[missing] = np.interp(idx[missing], idx[~missing], masked[~missing])
    return Series(series.start, series.step_seconds, filled), int(missing.sum())


def scenario_from_series(
    series: Series,
    *,
    name: str,
    warmup_seconds: float,
    peak_replicas: int = 20,
    capacity: float | None = None,
    fill: bool = True,
    warmup_text: str | None = None,
) -> Scenario:
    """A scenario from a trace's requests per bucket (flags validated, errors name them).

    ``fill``: interpolate collection gaps and missing rows (:func:`fill_gaps`); otherwise a gap
    replays as zero arrivals and a missing row as zero arrivals the scaler cannot see.
    ``warmup_text``: the flag as the user wrote it, for the error message.
    """
    filled = 0
    if fill:
        series, filled = fill_gaps(series)
    arrivals, observed = per_minute(series)
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
        raise ScenarioError(f"--warmup {shown}: must be shorter than the trace ({span:.4g}h of "
                            f"data); pass e.g. --warmup {max(1, int(span * 30))}m")
    return Scenario(name, series.start, arrivals, observed, float(capacity), warmup,
                    filled_buckets=filled)
