"""What every model specification provides: a name, how much history it needs, a state fit.

A specification (``SeasonalNaive(season_seconds=86400)``) holds validated hyper-parameters only;
``fit`` turns it plus a series into an immutable :class:`~forecasting.fitted.FittedModel`. The
shared machinery (cleaning, backtest, conformal calibration, skill) lives in
:mod:`forecasting.selection`, so each model only has to produce a smoothing state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from forecasting.smoothing import SmoothingState
from forecasting.types import FloatArray

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95)


@dataclass(frozen=True)
class StateFit:
    """A model's state at the end of the values it was fitted on, and what went wrong."""

    state: SmoothingState
    warnings: tuple[str, ...] = ()
    fit_step_seconds: int = 0
    """Resolution the parameters were estimated at (0 = the series' own step)."""


class Forecaster(Protocol):
    """A model specification: validated hyper-parameters, no data."""

    @property
    def name(self) -> str: ...

    def min_obs(self, *, step_seconds: int) -> int:
        """Fewest training steps this model can be fitted on."""
        ...

    def fit_state(self, values: FloatArray, *, step_seconds: int) -> StateFit:
        """Fit on cleaned values (NaN = missing); the state sits just after the last value."""
        ...


def period_steps(season_seconds: int, step_seconds: int) -> int:
    """Season length in steps (at least 1), e.g. 1 day at 10-minute steps = 144."""
    return max(1, round(season_seconds / step_seconds))


def season_label(season_seconds: int) -> str:
    """``86400 -> "1d"``, ``604800 -> "7d"``, ``3600 -> "1h"``."""
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if season_seconds % seconds == 0:
            return f"{season_seconds // seconds}{unit}"
    return f"{season_seconds}s"
