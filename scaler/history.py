"""Per-model demand history at a fixed step: backfilled from the source, then fed live samples.

A bucket ``[t, t + step)`` holds the mean of the samples that fell in it. Only completed buckets
(before the one containing ``now``) are shown to forecasters, so a half-filled bucket never reads
as a drop in demand.
"""

from __future__ import annotations

import math

import numpy as np

from forecasting.types import Series


class History:
    """Mutable, owned by the engine alone; hands out immutable ``Series`` copies."""

    def __init__(self, *, step_seconds: int, span_seconds: float) -> None:
        self.step = step_seconds
        self.capacity = max(2, int(span_seconds // step_seconds))
        self.start: float | None = None
        self._sums = np.zeros(0)
        self._counts = np.zeros(0)

    def backfill(self, series: Series) -> None:
        """Replace the history with ``series`` (resampled to this step when it differs)."""
        values = np.asarray(series.values, dtype=np.float64)
        if series.step_seconds != self.step:
            values = _resample(values, series.step_seconds, self.step)
        finite = np.isfinite(values)
        self.start = _align(series.start, self.step)
        self._sums = np.where(finite, values, 0.0)
        self._counts = finite.astype(np.float64)
        self._trim()

    def add(self, at: float, value: float) -> None:
        """Fold one live sample into its bucket (NaN and inf are ignored: no data is no zero)."""
        if not math.isfinite(value):
            return
        if self.start is None:
            self.start = _align(at, self.step)
        index = int((at - self.start) // self.step)
        if index < 0:
            return
        if index >= len(self._sums):
            grow = index + 1 - len(self._sums)
            self._sums = np.concatenate([self._sums, np.zeros(grow)])
            self._counts = np.concatenate([self._counts, np.zeros(grow)])
        self._sums[index] += value
        self._counts[index] += 1
        self._trim()

    def completed(self, now: float) -> Series | None:
        """Buckets that ended at or before ``now``, NaN where no sample fell; None if empty."""
        if self.start is None:
            return None
        n = min(len(self._sums), int((now - self.start) // self.step))
        if n <= 0:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(self._counts[:n] > 0, self._sums[:n] / self._counts[:n], np.nan)
        return Series(start=self.start, step_seconds=self.step, values=values)

    def _trim(self) -> None:
        extra = len(self._sums) - self.capacity
        if extra > 0 and self.start is not None:
            self._sums = self._sums[extra:]
            self._counts = self._counts[extra:]
            self.start += extra * self.step


def _align(t: float, step: int) -> float:
    return math.floor(t / step) * step


def _resample(values: np.ndarray, from_step: int, to_step: int) -> np.ndarray:
    """Mean-aggregate to a coarser step, or repeat to a finer one (step multiples only)."""
    if to_step > from_step and to_step % from_step == 0:
        k = to_step // from_step
        n = len(values) // k * k
        with np.errstate(invalid="ignore"):
            blocks = values[:n].reshape(-1, k)
            counts = np.isfinite(blocks).sum(axis=1)
            sums = np.nansum(blocks, axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if from_step > to_step and from_step % to_step == 0:
        return np.repeat(values, from_step // to_step)
    raise ValueError(f"cannot resample a {from_step}s series to {to_step}s: steps must divide")
