"""The fitted-model protocol the scaler depends on, and the one implementation every model shares.

A fit is expensive (statsmodels, seconds) and runs every few minutes in a worker process; the
level of LLM traffic moves within minutes. So a fitted model is an immutable value that can be
*updated* cheaply with the observations seen since the fit (a few Python float operations per
step) and asked for a forecast with calibrated quantiles at any time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np

from forecasting.calibration import Calibration
from forecasting.smoothing import SmoothingState, predict, rolling_forecasts, run
from forecasting.types import FitDiagnostics, FloatArray, Forecast, Series


@runtime_checkable
class FittedForecaster(Protocol):
    """A fitted model: immutable, picklable, cheap to update and to ask for a forecast."""

    @property
    def name(self) -> str:
        """Model name, e.g. ``mstl_ets`` or ``seasonal_naive_1d``."""
        ...

    @property
    def skill(self) -> float | None:
        """MASE against seasonal naive on recent held-out data at the horizon (< 1 = better
        than seasonal naive); None when the history is too short to tell."""
        ...

    @property
    def reason(self) -> str:
        """Why this model was chosen, or why its skill is unknown."""
        ...

    @property
    def diagnostics(self) -> FitDiagnostics: ...

    @property
    def end(self) -> float:
        """Unix seconds of the step after the last observation seen (= ``forecast`` origin)."""
        ...

    @property
    def step_seconds(self) -> int: ...

    def forecast(self, h: int) -> Forecast: ...

    def update(self, new: Series) -> FittedForecaster: ...


@dataclass(frozen=True)
class FittedModel:
    """Smoothing state + conformal calibration: the implementation of :class:`FittedForecaster`."""

    name: str
    state: SmoothingState
    calibration: Calibration
    end: float
    step_seconds: int
    skill: float | None = None
    reason: str = ""
    diagnostics: FitDiagnostics = field(default_factory=FitDiagnostics)

    def forecast(self, h: int) -> Forecast:
        """Mean and quantiles for the ``h`` steps from ``end``; never negative or NaN."""
        if h < 1:
            raise ValueError(f"h = {h}, must be >= 1")
        mean, paths = self.calibration.bands(predict(self.state, h))
        return Forecast(self.end, self.step_seconds, mean, paths, self.name)

    def rolling(self, new: FloatArray, h: int, *, every: int = 1) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The forecasts ``update`` with ``new[:i]`` then ``forecast(h)`` would give, for ``i`` =
        0, ``every``, ... < ``len(new)``, in one pass and the same floats: (origins, means
        (forecasts, h), quantile paths (forecasts, levels, h), levels lowest first). ``new``
        starts at ``end``, on this model's step (a backtest forecasts at every minute)."""
        if h < 1:
            raise ValueError(f"h = {h}, must be >= 1")
        if every < 1:
            raise ValueError(f"every = {every}, must be >= 1")
        _, raw = rolling_forecasts(self.state, np.asarray(new, dtype=np.float64), horizon=h, stride=every)
        means, paths = self.calibration.band_rows(raw)
        # Added up one update at a time, as ``update`` moves ``end``: the same floats.
        steps = np.full(raw.shape[0], float(every * self.step_seconds))
        steps[:1] = self.end
        origins = np.cumsum(steps)
        return origins, means, paths

    def update(self, new: Series) -> FittedModel:
        """Follow the level with observations after ``end``; returns a new model.

        Samples before ``end`` (already seen) are skipped, so overlapping windows are fine; a
        gap between ``end`` and ``new.start`` counts as missing data. ``new`` must have the same
        step and be aligned to this model's step grid.
        """
        values = align_after(new, end=self.end, step_seconds=self.step_seconds)
        if values.shape[0] == 0:
            return self
        state = run(self.state, values)
        return replace(self, state=state, end=self.end + values.shape[0] * self.step_seconds)


def align_after(new: Series, *, end: float, step_seconds: int) -> FloatArray:
    """Values of ``new`` from time ``end`` on, NaN-padded over any gap before ``new.start``."""
    if new.step_seconds != step_seconds:
        raise ValueError(
            f"update series step is {new.step_seconds} s, the model's is {step_seconds} s"
        )
    offset_steps = (new.start - end) / step_seconds
    if not math.isclose(offset_steps, round(offset_steps), abs_tol=1e-6):
        raise ValueError(
            f"update series start {new.start} is not on the model's {step_seconds} s grid "
            f"(model end {end})"
        )
    offset = round(offset_steps)
    if offset >= 0:
        return np.concatenate([np.full(offset, np.nan), new.values])
    return np.asarray(new.values[-offset:], dtype=np.float64)
