"""Make real traffic fit to learn from: collection gaps, missing data, resolution.

Real request counters have holes: a Prometheus scrape that failed, a collector that was down.
The worst kind reads as *zero* - whole windows of zeros amid steady traffic (ServeGen m-mid has
84 such 10-minute buckets). Learned as demand they teach the model that traffic vanishes every
day at that time, and the scaler would scale down into the next real peak. They become NaN here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from forecasting.types import FloatArray


@dataclass(frozen=True)
class GapPolicy:
    """When a run of zeros is a collection gap rather than demand.

    A run of zeros is a gap when the traffic around it (median of ``context_steps`` non-missing
    samples before it, and after it if any) is at least ``min_level`` - so a zero there has a
    negligible Poisson probability (``exp(-5)`` < 1 %) - and it is at most ``max_run_seconds`` long.
    """

    min_level: float = 5.0
    """Series units per step (requests per bucket)."""
    max_run_seconds: int = 6 * 3600
    """Longer runs of zeros are believed: a model that really went idle."""
    context_steps: int = 6

    def __post_init__(self) -> None:
        if self.min_level <= 0 or self.max_run_seconds < 0 or self.context_steps < 1:
            raise ValueError(f"invalid GapPolicy {self}: min_level > 0, max_run_seconds >= 0, "
                             "context_steps >= 1 required")

    def max_run_steps(self, step_seconds: int) -> int:
        return self.max_run_seconds // step_seconds


def mask_gap_zeros(
    values: FloatArray, *, step_seconds: int, policy: GapPolicy
) -> tuple[FloatArray, int]:
    """Values with collection-gap zeros replaced by NaN, and how many were replaced."""
    out = np.array(values, dtype=np.float64)
    masked = 0
    max_run = policy.max_run_steps(step_seconds)
    finite = np.flatnonzero(~np.isnan(out))
    k = policy.context_steps
    for start, stop in _zero_runs(out):
        if stop - start > max_run:
            continue
        # The k observed samples nearest the run on each side (binary search: O(log n) a run).
        left = np.searchsorted(finite, start)
        right = np.searchsorted(finite, stop)
        before = out[finite[max(0, left - k) : left]].tolist()
        after = out[finite[right : right + k]].tolist()
        # statistics.median on a handful of floats is ~30x cheaper than np.median.
        level_ok = bool(before) and statistics.median(before) >= policy.min_level
        if after:
            level_ok = level_ok and statistics.median(after) >= policy.min_level
        if level_ok:
            out[start:stop] = np.nan
            masked += stop - start
    return out, masked


def _zero_runs(values: FloatArray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of consecutive exact zeros."""
    is_zero = np.concatenate([[False], values == 0.0, [False]])
    edges = np.flatnonzero(np.diff(is_zero.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def fill_missing(values: FloatArray, *, period: int) -> FloatArray:
    """NaN-free copy for estimators that cannot skip missing data (statsmodels).

    A missing sample takes the value one period earlier (or later), else linear interpolation,
    so a gap is filled with what usually happens at that time of day - not with zero.
    """
    out = np.array(values, dtype=np.float64)
    if not np.isnan(out).any():
        return out
    if period > 1 and out.shape[0] > period:
        for shift in (period, -period):
            missing = np.isnan(out)
            source = np.roll(out, shift)
            valid = slice(shift, None) if shift > 0 else slice(None, shift)
            take = np.zeros_like(missing)
            take[valid] = missing[valid] & ~np.isnan(source[valid])
            out[take] = source[take]
    missing = np.isnan(out)
    if missing.all():
        return np.zeros_like(out)
    if missing.any():
        idx = np.arange(out.shape[0])
        out[missing] = np.interp(idx[missing], idx[~missing], out[~missing])
    return out


def aggregate(values: FloatArray, factor: int) -> FloatArray:
    """Block means of ``factor`` samples, aligned so the last block ends at the last sample.

    Means, not sums, so the result stays in units per fine step and a coarse profile can be
    interpolated straight back onto the fine grid. Leading samples that do not fill a block are
    dropped; a block with no data is NaN.
    """
    if factor == 1:
        return np.array(values, dtype=np.float64)
    n_blocks = values.shape[0] // factor
    blocks = values[values.shape[0] - n_blocks * factor :].reshape(n_blocks, factor)
    counts = np.sum(~np.isnan(blocks), axis=1)
    sums = np.nansum(blocks, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
