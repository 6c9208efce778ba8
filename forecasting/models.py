"""Holt-Winters, MSTL + ETS and damped ETS: statsmodels estimates, shared smoothing state.

Each model estimates its parameters with statsmodels (imported lazily: ``statsmodels.tsa``
costs ~2 s to import) on block means at about 10-minute resolution
(:mod:`forecasting.resolution`), then replays the data through the package's own filter
(:mod:`forecasting.smoothing`) so NaN and collection gaps are skipped, not learned, and
``update`` continues exactly where the fit stopped.

References
----------
Holt, C.C. (1957); Winters, P.R. (1960). Exponential smoothing with seasonality.
Bandara, K., Hyndman, R.J., Bergmeir, C. (2021) MSTL: a seasonal-trend decomposition algorithm
for time series with multiple seasonal patterns. arXiv:2107.13462.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from forecasting.base import Forecaster, StateFit, period_steps, season_label
from forecasting.cleaning import aggregate, fill_missing
from forecasting.naive import SeasonalNaive
from forecasting.resolution import MAX_POINTS_PER_DAY, fit_factor, refine
from forecasting.smoothing import SmoothingState, run
from forecasting.spec import ForecasterMixin
from forecasting.types import FloatArray

DAY, WEEK = 86400, 604800


def _check_points(points_per_day: int) -> None:
    if points_per_day < 4:
        raise ValueError(f"points_per_day = {points_per_day}, must be >= 4")


def _coarse(
    values: FloatArray, step_seconds: int, *, points_per_day: int = MAX_POINTS_PER_DAY
) -> tuple[FloatArray, int, int]:
    """Block means for fitting, the factor, and the fitting step in seconds."""
    factor = fit_factor(step_seconds, max_points_per_day=points_per_day)
    return aggregate(values, factor), factor, step_seconds * factor


def _state(res: Any, *, season: FloatArray, seasonal: bool) -> SmoothingState:
    """Initial state from statsmodels Holt-Winters results, in error-correction form."""
    p = res.params

    def get(key: str, default: float) -> float:
        value = p.get(key, default)
        return default if value is None or not np.isfinite(value) else float(value)

    alpha = float(np.clip(get("smoothing_level", 0.0), 0.0, 1.0))
    return SmoothingState(
        level=get("initial_level", 0.0),
        trend=get("initial_trend", 0.0),
        season=season,
        alpha=alpha,
        beta=float(np.clip(alpha * get("smoothing_trend", 0.0), 0.0, 1.0)),
        gamma=float(np.clip(get("smoothing_seasonal", 0.0), 0.0, 1.0)) if seasonal else 0.0,
        phi=float(np.clip(get("damping_trend", 1.0), 0.0, 1.0)),
    )


def _ets(y: FloatArray, *, period: int | None) -> Any:
    """Damped additive-trend exponential smoothing, fast settings (ENVIRONMENT.md: 0.08 s)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    model = ExponentialSmoothing(
        y, trend="add", damped_trend=True,
        seasonal="add" if period else None, seasonal_periods=period,
        initialization_method="heuristic" if period else "estimated",
    )
    return model.fit(use_brute=False)


@dataclass(frozen=True, kw_only=True)
class HoltWintersDamped(ForecasterMixin):
    """Additive Holt-Winters with a damped trend and one season (daily by default)."""

    season_seconds: int = DAY
    points_per_day: int = MAX_POINTS_PER_DAY
    """Fitting resolution (block means), see :mod:`forecasting.resolution`."""

    def __post_init__(self) -> None:
        if self.season_seconds <= 0:
            raise ValueError(f"season_seconds = {self.season_seconds}, must be > 0")
        _check_points(self.points_per_day)

    @property
    def name(self) -> str:
        return f"holt_winters_damped_{season_label(self.season_seconds)}"

    def min_obs(self, *, step_seconds: int) -> int:
        # statsmodels' heuristic initialisation needs two full seasons (+ a few points).
        factor = fit_factor(step_seconds, max_points_per_day=self.points_per_day)
        return 2 * period_steps(self.season_seconds, step_seconds) + 10 * factor

    def fit_state(self, values: FloatArray, *, step_seconds: int) -> StateFit:
        coarse, factor, fit_step = _coarse(values, step_seconds,
                                           points_per_day=self.points_per_day)
        period = period_steps(self.season_seconds, fit_step)
        res = _ets(fill_missing(coarse, period=period), period=period)
        seasons = np.asarray(res.params["initial_seasons"], dtype=np.float64)
        init = _state(res, season=seasons, seasonal=True)
        return StateFit(refine(run(init, coarse), factor), fit_step_seconds=fit_step)


@dataclass(frozen=True, kw_only=True)
class DampedETS(ForecasterMixin):
    """Level + damped trend, no season: what is left when there is less than a day of history."""

    points_per_day: int = MAX_POINTS_PER_DAY
    """Fitting resolution (block means), see :mod:`forecasting.resolution`."""

    def __post_init__(self) -> None:
        _check_points(self.points_per_day)

    @property
    def name(self) -> str:
        return "ets_damped"

    def min_obs(self, *, step_seconds: int) -> int:
        return 10 * fit_factor(step_seconds, max_points_per_day=self.points_per_day)

    def fit_state(self, values: FloatArray, *, step_seconds: int) -> StateFit:
        coarse, factor, fit_step = _coarse(values, step_seconds,
                                           points_per_day=self.points_per_day)
        res = _ets(fill_missing(coarse, period=1), period=None)
        init = _state(res, season=np.zeros(1), seasonal=False)
        return StateFit(refine(run(init, coarse), factor), fit_step_seconds=fit_step)


@dataclass(frozen=True, kw_only=True)
class MSTLETS(ForecasterMixin):
    """MSTL seasonal profiles (daily, + weekly with > 2 weeks) under a damped ETS level.

    The seasonal profile is fixed between fits (``gamma = 0``); the level and trend of the
    deseasonalised series are tracked by ETS, so ``update`` follows a level shift in minutes
    while the shape of the day stays what the last weeks taught.
    """

    seasons_seconds: tuple[int, ...] = (DAY, WEEK)
    seasonal_windows: tuple[int, ...] = (25, 29)
    """STL seasonal smoother length (odd, in cycles) per period, shortest period first. Longer
    than statsmodels' MSTL default (11, 15): on ServeGen m-small/m-mid 25 cut the 30-minute MASE
    from 0.61 to 0.56 (7 made it 0.8): a day's shape is better averaged than chased."""
    points_per_day: int = MAX_POINTS_PER_DAY
    """Fitting resolution (block means). 48 (30-minute buckets) halves the fit time and makes
    this model alone better (30-minute MASE on ServeGen m-small 0.49 vs 0.56, m-mid 0.51 vs 0.56),
    but ``fit_auto`` then picks it on holdouts where it later loses, and the selected model got
    worse (m-small 0.434 vs 0.415, m-mid 0.494 vs 0.483): kept at 144 by default."""
    jump_fraction: float = 0.05
    """STL evaluates its LOESS every ``period * jump_fraction`` points (ENVIRONMENT.md: 1/20
    turns 18 s into 1.4 s for daily + weekly at 5-minute steps)."""
    inner_iterations: int = 2
    """STL inner-loop passes (seasonal then trend smoothing) per decomposition. Cleveland et al.
    (1990) give 2 for STL without robustness iterations, as here; statsmodels' default of 5 made
    this the dearest part of a long backtest (a 21-day fit 0.45 s instead of 0.23 s, MSTL
    decomposing twice per period) for the same forecasts: ServeGen m-small 30-minute MASE 0.5575
    with 5, 0.5572 with 2 (docs/BACKTEST.md, "Speed")."""

    def __post_init__(self) -> None:
        if not self.seasons_seconds or any(s <= 0 for s in self.seasons_seconds):
            raise ValueError(f"seasons_seconds = {self.seasons_seconds}, must be positive")
        if not self.seasonal_windows or any(w < 7 or w % 2 == 0 for w in self.seasonal_windows):
            raise ValueError(f"seasonal_windows = {self.seasonal_windows}, each must be odd >= 7")
        _check_points(self.points_per_day)
        if not 0.0 < self.jump_fraction <= 1.0:
            raise ValueError(f"jump_fraction = {self.jump_fraction}, must be in (0, 1]")
        if self.inner_iterations < 1:
            raise ValueError(f"inner_iterations = {self.inner_iterations}, must be >= 1")

    @property
    def name(self) -> str:
        return "mstl_ets"

    def min_obs(self, *, step_seconds: int) -> int:
        return 2 * period_steps(min(self.seasons_seconds), step_seconds) + 1

    def periods(self, n_steps: int, *, step_seconds: int) -> list[int]:
        """Seasonal periods (in steps) the data can support: more than two cycles each."""
        out = [period_steps(s, step_seconds) for s in sorted(self.seasons_seconds)]
        return [p for p in out if p > 1 and 2 * p < n_steps]

    def fit_state(self, values: FloatArray, *, step_seconds: int) -> StateFit:
        coarse, factor, fit_step = _coarse(values, step_seconds,
                                           points_per_day=self.points_per_day)
        periods = self.periods(coarse.shape[0], step_seconds=fit_step)
        filled = fill_missing(coarse, period=periods[0] if periods else 1)
        seasonal = self._decompose(filled, periods)
        deseason = np.where(np.isnan(coarse), np.nan, filled - seasonal.sum(axis=0))
        res = _ets(fill_missing(deseason, period=1), period=None)
        walked = run(_state(res, season=np.zeros(1), seasonal=False), deseason)
        state = replace(walked, season=_profile(seasonal, periods), pos=0)
        return StateFit(refine(state, factor), fit_step_seconds=fit_step)

    def _decompose(self, y: FloatArray, periods: Sequence[int]) -> FloatArray:
        """MSTL (Bandara et al.): STL per period in turn, twice; (len(periods), n) seasonals."""
        from statsmodels.tsa.seasonal import STL

        seasonal = np.zeros((len(periods), y.shape[0]))
        deseason = y.copy()
        for _ in range(2 if len(periods) > 1 else 1):
            for i, period in enumerate(periods):
                deseason = deseason + seasonal[i]
                jump = max(1, int(period * self.jump_fraction))
                window = self.seasonal_windows[min(i, len(self.seasonal_windows) - 1)]
                res = STL(deseason, period=period, seasonal=window,
                          seasonal_jump=jump, trend_jump=jump, low_pass_jump=jump).fit(inner_iter=self.inner_iterations)
                seasonal[i] = res.seasonal
                deseason = deseason - seasonal[i]
        return seasonal


def _profile(seasonal: FloatArray, periods: Sequence[int]) -> FloatArray:
    """Sum of each component's last cycle, as one profile starting at the next step."""
    if not periods:
        return np.zeros(1)
    n, length = seasonal.shape[1], max(periods)
    profile = np.zeros(length)
    for component, period in zip(seasonal, periods, strict=True):
        # The next step (index n) has the phase of index n - period.
        profile += component[n - period + (np.arange(length) % period)]
    return profile


def candidate_models(
    seasons_seconds: Sequence[int], *, step_seconds: int, train_steps: int
) -> list[Forecaster]:
    """Eligible models for ``train_steps`` of training history, simplest first (they win ties)."""
    out: list[Forecaster] = []
    for season in sorted(seasons_seconds):
        if 1 < period_steps(season, step_seconds) <= train_steps:
            out.append(SeasonalNaive(season_seconds=season))
    daily = [s for s in seasons_seconds if s <= DAY]
    specs: list[Forecaster] = [DampedETS()]
    if daily:
        specs.append(HoltWintersDamped(season_seconds=max(daily)))
    if seasons_seconds:
        specs.append(MSTLETS(seasons_seconds=tuple(sorted(seasons_seconds))))
    out += [s for s in specs if s.min_obs(step_seconds=step_seconds) <= train_steps]
    return out
