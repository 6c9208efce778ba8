"""Plain data passed into and out of forecasters.

Everything here is immutable and picklable, so fits can run in worker processes.
Times are Unix seconds (float) and steps are whole seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """A regular time series: ``values[i]`` is the value at ``start + i * step_seconds``.

    NaN marks a missing sample. Forecasters must tolerate NaN runs.
    """

    start: float
    """Unix seconds of the first sample."""
    step_seconds: int
    """Sampling step in seconds (> 0)."""
    values: FloatArray
    """Samples, float64; NaN = missing."""

    def __post_init__(self) -> None:
        if self.step_seconds <= 0:
            raise ValueError(f"step_seconds = {self.step_seconds}, must be > 0")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {values.shape}")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> float:
        """Unix seconds just after the last sample (= time of the next sample)."""
        return self.start + len(self) * self.step_seconds

    def times(self) -> FloatArray:
        return self.start + np.arange(len(self), dtype=np.float64) * self.step_seconds


@dataclass(frozen=True)
class Forecast:
    """Forecast for ``h`` steps: step ``i`` is the value at ``origin + i * step_seconds``.

    ``quantiles`` maps a probability in (0, 1) to an array of length ``h``; values are never
    negative or NaN, and for ``p < 0.5 < q``: quantile(p) <= mean <= quantile(q).
    """

    origin: float
    """Unix seconds of the first forecast step."""
    step_seconds: int
    mean: FloatArray
    quantiles: Mapping[float, FloatArray] = field(default_factory=dict)
    model: str = ""
    """Name of the model that produced it (e.g. ``seasonal_naive``)."""

    @property
    def h(self) -> int:
        return int(self.mean.shape[0])

    def quantile(self, q: float) -> FloatArray:
        """The ``q`` quantile path; the closest stored level at or above ``q`` when not exact."""
        if q in self.quantiles:
            return self.quantiles[q]
        above = sorted(level for level in self.quantiles if level >= q)
        if above:
            return self.quantiles[above[0]]
        if self.quantiles:
            return self.quantiles[max(self.quantiles)]
        return self.mean


@dataclass(frozen=True)
class FitDiagnostics:
    """What happened while fitting: recorded, never hidden (fits run in worker processes).

    The scaler exports these next to the forecast so an operator can see why a model was
    chosen, demoted, or fitted badly.
    """

    n_obs: int = 0
    """Non-missing observations the fit saw (after cleaning)."""
    n_missing: int = 0
    """Samples that were NaN in the input or treated as missing (collection gaps)."""
    n_gap_zeros: int = 0
    """Zeros amid traffic that were treated as collection gaps, not demand."""
    fit_seconds: float = 0.0
    """Wall time of the whole fit (selection included), seconds."""
    fit_step_seconds: int = 0
    """Resolution the seasonal profile was fitted at (coarser than the series when it is fine)."""
    warnings: tuple[str, ...] = ()
    """Warnings raised during the fit (``ConvergenceWarning: ...``), in order, deduplicated."""
    candidates: Mapping[str, float] = field(default_factory=dict)
    """Backtest pinball loss of every candidate model tried by ``fit_auto`` (lower is better)."""
    coverage: Mapping[float, float] = field(default_factory=dict)
    """Cross-fitted coverage of each quantile at the horizon on the holdout (0..1)."""
