"""Conformal quantiles: a model's own recent out-of-sample errors, per horizon step.

A model's parametric intervals assume its errors are Gaussian and its parameters right; LLM
traffic is neither. Instead each fitted model keeps, for every horizon step ``k`` and quantile
level ``p``, the ``p`` quantile of its recent ``k``-step errors (split conformal prediction), so a
p90 forecast covers about 90 % of data it has not seen - as long as the recent past looks like
the near future.

Errors may be scaled by the forecast (``scale = max(yhat, floor) ** power``): traffic is noisier
at the daily peak than in the trough, so ``power = 1`` (relative errors) gives narrower bands at
night and wider ones at the peak for the same marginal coverage.

References
----------
Vovk, V., Gammerman, A., Shafer, G. (2005) Algorithmic learning in a random world. Springer.
Stankeviciute, K., Alaa, A., van der Schaar, M. (2021) Conformal time-series forecasting. NeurIPS.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.types import FloatArray


@dataclass(frozen=True)
class Calibration:
    """Per-step error quantiles of one model: ``offsets[i, k]`` is ``levels[i]`` at step k + 1."""

    levels: tuple[float, ...]
    offsets: FloatArray
    """Shape (len(levels), H): error quantiles in scaled units; steps beyond H reuse step H."""
    power: float = 0.0
    """Errors were divided by ``max(yhat, floor) ** power`` (0 = absolute errors)."""
    floor: float = 1.0
    """Smallest scale, series units: keeps relative errors finite where the forecast is ~0."""
    n: int = 0
    """Calibration origins used (0 = uncalibrated: bands collapse onto the mean)."""

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.float64)
        if offsets.ndim != 2 or offsets.shape[0] != len(self.levels):
            raise ValueError(
                f"offsets shape {offsets.shape} does not match {len(self.levels)} levels"
            )
        offsets.setflags(write=False)
        object.__setattr__(self, "offsets", offsets)

    def bands(self, raw_mean: FloatArray) -> tuple[FloatArray, dict[float, FloatArray]]:
        """Clipped mean and quantile paths for a raw (unclipped) point forecast.

        Guarantees: nothing negative or NaN; ``q(p) <= mean <= q(r)`` for ``p < 0.5 < r``;
        quantiles non-decreasing in the level.
        """
        mean, paths = self.band_rows(raw_mean[np.newaxis])
        return mean[0], dict(zip(sorted(self.levels), paths[0], strict=True))

    def band_rows(self, raw_means: FloatArray) -> tuple[FloatArray, FloatArray]:
        """:meth:`bands` of many point forecasts at once, the same floats: ``raw_means`` is
        (forecasts, h); returns the clipped means (forecasts, h) and the paths (forecasts,
        levels, h), levels lowest first. A backtest makes a forecast at every simulated minute."""
        h = raw_means.shape[1]
        mean = np.maximum(np.nan_to_num(raw_means, nan=0.0), 0.0)
        levels = sorted(self.levels)
        if not levels:
            return mean, np.zeros((raw_means.shape[0], 0, h))
        rows = self.offsets[np.argsort(self.levels, kind="stable")]
        cols = np.minimum(np.arange(h), max(rows.shape[1] - 1, 0))
        offset = rows[:, cols] if rows.shape[1] else np.zeros((len(levels), h))
        scale = np.maximum(mean, self.floor) ** self.power
        path = np.maximum(np.nan_to_num(raw_means[:, None, :] + offset * scale[:, None, :], nan=0.0), 0.0)
        low, high = bisect_left(levels, 0.5), bisect_right(levels, 0.5)
        path[:, :low] = np.minimum(path[:, :low], mean[:, None, :])
        path[:, high:] = np.maximum(path[:, high:], mean[:, None, :])
        np.maximum.accumulate(path, axis=1, out=path)  # non-decreasing in the level
        return mean, path


def calibrate(
    actual: FloatArray,
    predicted: FloatArray,
    *,
    levels: Sequence[float],
    power: float,
    floor: float,
) -> Calibration:
    """Conformal error quantiles from a rolling-origin backtest.

    Parameters
    ----------
    actual, predicted : (n_origins, H) arrays; NaN in ``actual`` = not scored.
    levels : quantile levels in (0, 1).
    power, floor : error scaling, see :class:`Calibration`.
    """
    errors = _scaled_errors(actual, predicted, power=power, floor=floor)
    n = int(np.sum(~np.isnan(errors[:, -1]))) if errors.size else 0
    offsets = np.zeros((len(levels), predicted.shape[1] if predicted.ndim == 2 else 0))
    for i, level in enumerate(levels):
        for k in range(offsets.shape[1]):
            offsets[i, k] = _conformal_quantile(errors[:, k], level)
        row = _extrapolate(offsets[i])
        # Uncertainty does not shrink with lead time: smooth the per-step noise away.
        offsets[i] = np.maximum.accumulate(row) if level >= 0.5 else np.minimum.accumulate(row)
    return Calibration(tuple(levels), offsets, power=power, floor=floor, n=n)


def _extrapolate(row: FloatArray) -> FloatArray:
    """Fill steps with no scored origin (short history) from the last known one, growing as
    sqrt(k) like a random walk's spread; all unknown -> 0 (no band)."""
    known = np.flatnonzero(~np.isnan(row))
    if known.size == 0:
        return np.zeros_like(row)
    last = int(known[-1])
    out = np.array(row)
    steps = np.arange(row.shape[0])
    tail = steps > last
    out[tail] = row[last] * np.sqrt((steps[tail] + 1) / (last + 1))
    return np.where(np.isnan(out), row[last], out)


def _scaled_errors(
    actual: FloatArray, predicted: FloatArray, *, power: float, floor: float
) -> FloatArray:
    scale = np.maximum(np.maximum(predicted, 0.0), floor) ** power
    return (actual - predicted) / scale


def _conformal_quantile(errors: FloatArray, level: float) -> float:
    """The ``ceil((n + 1) p) / n`` empirical quantile: finite-sample valid coverage."""
    finite = errors[~np.isnan(errors)]
    n = finite.shape[0]
    if n == 0:
        return math.nan
    upper = min(math.ceil((n + 1) * level), n)
    rank = upper if level >= 0.5 else max(math.floor((n + 1) * level), 1)
    return float(np.partition(finite, rank - 1)[rank - 1])


def pinball(actual: FloatArray, quantile: FloatArray, level: float) -> float:
    """Mean pinball (quantile) loss of one quantile path, NaN actuals ignored; series units."""
    diff = actual - quantile
    ok = ~np.isnan(diff)
    if not ok.any():
        return math.nan
    d = diff[ok]
    return float(np.mean(np.maximum(level * d, (level - 1.0) * d)))
