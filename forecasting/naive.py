"""Seasonal naive: tomorrow at 14:00 looks like today at 14:00; the baseline to beat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.base import StateFit, period_steps, season_label
from forecasting.smoothing import SmoothingState
from forecasting.spec import ForecasterMixin
from forecasting.types import FloatArray


@dataclass(frozen=True, kw_only=True)
class SeasonalNaive(ForecasterMixin):
    """Forecast = the value one season earlier (``season_seconds = step`` gives plain naive).

    As a smoothing state it is ``level = 0, gamma = 1``: each observation replaces its slot of
    the profile, so ``update`` keeps it exact between refits.
    """

    season_seconds: int = 86400
    """Season length, seconds (86400 = daily, 604800 = weekly)."""

    def __post_init__(self) -> None:
        if self.season_seconds <= 0:
            raise ValueError(f"season_seconds = {self.season_seconds}, must be > 0")

    @property
    def name(self) -> str:
        return f"seasonal_naive_{season_label(self.season_seconds)}"

    def min_obs(self, *, step_seconds: int) -> int:
        return period_steps(self.season_seconds, step_seconds)

    def fit_state(self, values: FloatArray, *, step_seconds: int) -> StateFit:
        period = period_steps(self.season_seconds, step_seconds)
        profile = last_season(values, period)
        state = SmoothingState(level=0.0, trend=0.0, season=profile, pos=0, gamma=1.0)
        return StateFit(state)


def last_season(values: FloatArray, period: int) -> FloatArray:
    """The last ``period`` values as a profile starting at the next step's phase.

    A missing slot takes the latest earlier season that has it; never-seen slots take the mean
    of the series (0 if it has no data at all).
    """
    n = values.shape[0]
    profile = np.full(period, np.nan)
    # Slot j of the profile is the phase of time index n + j, i.e. of n + j - period, n + j - 2p...
    for back in range(1, n // period + 2):
        idx = np.arange(period) + n - back * period
        ok = (idx >= 0) & np.isnan(profile)
        if not ok.any():
            break
        profile[ok] = values[idx[ok]]
    fallback = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
    return np.where(np.isnan(profile), fallback, profile)


def baseline_spec(seasons_seconds: Sequence[int], step_seconds: int) -> SeasonalNaive:
    """Seasonal naive at the shortest season longer than one step (plain naive if none)."""
    longer = [s for s in seasons_seconds if period_steps(s, step_seconds) > 1]
    return SeasonalNaive(season_seconds=min(longer) if longer else step_seconds)
