"""Make real traffic fit to learn from: collection gaps, missing data, resolution.

Real request counters have holes: a Prometheus scrape that failed, a collector that was down.
The worst kind reads as *zero* - whole windows of zeros amid steady traffic (ServeGen m-mid has
84 such 10-minute buckets, plus partial buckets at their edges). Learned as demand they teach
the model that traffic vanishes every day at that time, and the scaler would scale down into
the next real peak. They become NaN here.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasting.types import FloatArray

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class GapPolicy:
    """When a run of (near-)zeros is a collection gap rather than demand.

    A run of samples each at most ``low_fraction`` of the series' typical level (zeros, and the
    partial buckets at a gap's edges: ServeGen m-mid has buckets of ~8k requests amid ~1.2M) is
    a gap when the traffic around it (median of ``context_steps`` observed samples before it, and
    after it if any) is at least ``min_level`` and at least ``1 / low_fraction`` times the run -
    so such a drop has a negligible probability as demand - and the run is at most
    ``max_run_seconds`` long.

    Series where such lows are common (more than ``max_low_share`` of the samples: a bursty
    client that is often idle) are on/off by nature: their lows are demand and nothing is masked.
    """

    min_level: float = 5.0
    """Series units per step (requests per bucket): ``exp(-5)`` < 1 % chance of a Poisson zero."""
    max_run_seconds: int = 6 * 3600
    """Longer runs are believed: a model that really went idle."""
    context_steps: int = 6
    low_fraction: float = 0.02
    max_low_share: float = 0.10
    trailing_seconds: int = 7 * 86400
    """:func:`trailing_gaps` only: the past that sets the typical level and the share of lows."""

    def __post_init__(self) -> None:
        if self.min_level <= 0 or self.max_run_seconds < 0 or self.context_steps < 1:
            raise ValueError(f"invalid GapPolicy {self}: min_level > 0, max_run_seconds >= 0, "
                             "context_steps >= 1 required")
        if self.trailing_seconds <= 0:
            raise ValueError(f"invalid GapPolicy {self}: trailing_seconds > 0 required")
        if not 0 <= self.low_fraction < 1 or not 0 <= self.max_low_share <= 1:
            raise ValueError(f"invalid GapPolicy {self}: low_fraction in [0, 1), "
                             "max_low_share in [0, 1] required")

    def max_run_steps(self, step_seconds: int) -> int:
        return self.max_run_seconds // step_seconds


@dataclass(frozen=True)
class GapMask:
    """Cleaned values and what was done to them."""

    values: FloatArray
    """Input with collection-gap samples replaced by NaN."""
    masked: int
    enabled: bool
    """False for an on/off series (lows are demand): ``update`` must not mask its lows either."""


def mask_collection_gaps(values: FloatArray, *, step_seconds: int, policy: GapPolicy) -> GapMask:
    """Replace collection-gap runs by NaN (see :class:`GapPolicy`)."""
    out = np.array(values, dtype=np.float64)
    observed = ~np.isnan(out)
    positive = out[observed & (out > 0)]
    reference = float(np.median(positive)) if positive.size else 0.0
    low = observed & (out <= policy.low_fraction * reference)
    if not observed.any() or low.sum() > policy.max_low_share * observed.sum():
        return GapMask(out, 0, enabled=False)
    context = np.flatnonzero(observed & ~low)
    masked = 0
    for start, stop in runs(low):
        if stop - start > policy.max_run_steps(step_seconds):
            continue
        need = max(policy.min_level, float(out[start:stop].max()) / max(policy.low_fraction, 1e-12))
        if _surrounded(out, context, start, stop, need=need, k=policy.context_steps):
            out[start:stop] = np.nan
            masked += stop - start
    return GapMask(out, masked, enabled=True)


def trailing_gaps(values: FloatArray, *, step_seconds: int, policy: GapPolicy) -> BoolArray:
    """Collection gaps as they could be told at the time: each sample judged from the past only.

    :func:`mask_collection_gaps` looks at the whole series (its median, its share of lows, the
    traffic after a run, the run's full length), so a later sample can change the verdict on an
    earlier one. A replay must not let that happen - a scaler at minute t has only the samples
    before t - so here, for every sample:

    - the typical level is the median of the hourly medians of the positive observed samples
      in the ``trailing_seconds`` before the current hour (the whole series' median offline);
    - a low is an observed sample <= ``low_fraction`` x that level;
    - a run of lows is demand, not a gap, when lows were more than ``max_low_share`` of the
      observed samples in the trailing window before it (an on/off series);
    - otherwise a run is a gap from its start while it is at most ``max_run_seconds`` long so
      far and the median of the ``context_steps`` observed non-low samples before it is at
      least ``min_level`` and ``1 / low_fraction`` times the run's largest sample so far. The
      first sample that fails ends the gap: the rest of the run is believed, as ``update``
      believes zeros after ``max_run_seconds`` (offline, a longer run is believed whole).

    Returns a mask, True where a sample is a collection gap.
    """
    x = np.asarray(values, dtype=np.float64)
    observed = ~np.isnan(x)
    window = max(1, policy.trailing_seconds // step_seconds)
    level = _trailing_level(x, observed & (x > 0), window, block=max(1, 3600 // step_seconds))
    low = observed & (x <= policy.low_fraction * level)
    lows, seen = np.cumsum(np.concatenate([[0], low])), np.cumsum(np.concatenate([[0], observed]))
    context = np.flatnonzero(observed & ~low)
    gaps = np.zeros(x.shape[0], dtype=bool)
    for start, stop in runs(low):
        past = max(0, start - window)
        if lows[start] - lows[past] > policy.max_low_share * (seen[start] - seen[past]):
            continue  # lows are common: an on/off series, its lows are demand
        left = np.searchsorted(context, start)
        before = x[context[max(0, left - policy.context_steps) : left]].tolist()
        around = statistics.median(before) if before else 0.0
        if around < policy.min_level:
            continue
        run = x[start : min(stop, start + policy.max_run_steps(step_seconds))]
        fits = np.maximum.accumulate(run) <= policy.low_fraction * around
        gaps[start : start + (run.shape[0] if fits.all() else int(np.argmin(fits)))] = True
    return gaps


def _trailing_level(
    x: FloatArray, use: npt.NDArray[np.bool_], window: int, *, block: int
) -> FloatArray:
    """Per sample: median of the block medians of ``x[use]`` over the ``window`` samples before
    its block (0 where there are none).

    Blocks (an hour) make it cheap: one sliding median over ~168 block medians instead of one
    over ~10,000 samples per step (seconds on half a year of minutes). For telling a zero from
    traffic (2 % of the level) the median of hourly medians is as good as the exact one.
    """
    n_blocks = -(-x.shape[0] // block)
    padded = np.full(n_blocks * block, np.nan)
    padded[: x.shape[0]] = np.where(use, x, np.nan)
    k = max(1, window // block)
    with warnings.catch_warnings():  # all-NaN blocks and windows are expected: no data yet
        warnings.simplefilter("ignore", RuntimeWarning)
        hourly = np.nanmedian(padded.reshape(n_blocks, block), axis=1)
        past = np.lib.stride_tricks.sliding_window_view(
            np.concatenate([np.full(k, np.nan), hourly]), k)[:n_blocks]
        level = np.nanmedian(past, axis=1)
    return np.repeat(np.nan_to_num(level, nan=0.0), block)[: x.shape[0]]


def _surrounded(
    values: FloatArray, context: npt.NDArray[np.intp], start: int, stop: int, *, need: float,
    k: int,
) -> bool:
    """Median of the k context samples before [start, stop) - and after it, if any - >= need."""
    # Binary search for the nearest context samples: O(log n) a run.
    left, right = np.searchsorted(context, start), np.searchsorted(context, stop)
    before = values[context[max(0, left - k) : left]].tolist()
    after = values[context[right : right + k]].tolist()
    # statistics.median on a handful of floats is ~30x cheaper than np.median.
    if not before or statistics.median(before) < need:
        return False
    return not after or statistics.median(after) >= need


def runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` is True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
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
