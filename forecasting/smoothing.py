"""The one state every fitted model shares: additive damped Holt-Winters in error-correction form.

Every model in this package ends up as a :class:`SmoothingState`, whatever fitted it:

- seasonal naive is ``alpha = beta = 0, gamma = 1`` (the profile *is* the last season);
- Holt-Winters damped is its fitted ``alpha, beta, gamma, phi`` and final states;
- MSTL + ETS is a fixed seasonal profile (``gamma = 0``) with an ETS level/trend on top.

So ``update`` and ``forecast`` are the same cheap numpy/Python code for all of them, run at the
series' own (fine) resolution even when the profile was fitted at a coarser one.

Recursion for one observation ``y`` (statsmodels' Holt-Winters, error-correction form)::

    yhat = level + phi * trend + season[pos]
    e    = y - yhat
    level  <- level + phi * trend + alpha * e
    trend  <- phi * trend + beta * e          (beta = statsmodels' alpha * beta)
    season[pos] <- season[pos] + gamma * e
    pos    <- (pos + 1) % len(season)

A missing observation (NaN) advances time without correcting anything. A zero (or less than
``gap_fraction`` of the forecast) where the model expects at least ``gap_min_level`` is a
collection gap (the scraper lost data, demand did not
vanish) and is treated as missing, for at most ``max_gap_steps`` steps in a row; a longer run of
zeros is believed.

References
----------
Hyndman, R.J., Athanasopoulos, G. (2021) Forecasting: principles and practice, 3rd ed., ch. 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from forecasting.types import FloatArray


@dataclass(frozen=True)
class SmoothingState:
    """State of an additive damped Holt-Winters filter, positioned just before the next step.

    Units: ``level``, ``trend`` and ``season`` are in the series' units per step.
    """

    level: float
    trend: float
    season: FloatArray
    """Seasonal profile, ``season[pos]`` applies to the next step; length 1 = no season."""
    pos: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0
    phi: float = 1.0
    error_clip: float = math.inf
    """Largest forecast error (absolute, series units) one observation may correct: bursts move
    the level by at most ``alpha * error_clip`` per step, a sustained shift still gets through."""
    gap_min_level: float = math.inf
    gap_fraction: float = 0.0
    """An observation at most this fraction of the forecast (0 = exact zeros only) may be a gap."""
    """A zero observed where the forecast is at least this is a collection gap (missing)."""
    max_gap_steps: int = 0
    """Longest run of zeros treated as a collection gap before zeros are believed."""
    zero_run: int = 0
    """Gap zeros seen in a row so far."""
    shift_error: float = math.inf
    """An error beyond this (series units), ``shift_steps`` times in a row with the same sign, is
    a level shift, not a burst: the level jumps to it at once instead of crawling at ``alpha``."""
    shift_steps: int = 3
    shift_run: int = 0
    """Signed count of consecutive same-sign errors beyond ``shift_error`` so far."""

    def __post_init__(self) -> None:
        season = np.asarray(self.season, dtype=np.float64)
        if season.ndim != 1 or season.shape[0] < 1:
            raise ValueError(f"season must be a non-empty 1-d array, got shape {season.shape}")
        if not 0 <= self.pos < season.shape[0]:
            raise ValueError(f"pos = {self.pos}, must be in [0, {season.shape[0]})")
        for name in ("alpha", "beta", "gamma", "phi"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} = {value}, must be in [0, 1]")
        season.setflags(write=False)
        object.__setattr__(self, "season", season)

    @property
    def period(self) -> int:
        return int(self.season.shape[0])


def predict(state: SmoothingState, h: int) -> FloatArray:
    """Point forecast for the next ``h`` steps (may be negative: callers clip).

    ``yhat[k-1] = level + (phi + ... + phi^k) * trend + season[(pos + k - 1) % P]``.
    """
    damp = np.cumsum(np.full(h, state.phi) ** np.arange(1, h + 1))
    idx = (state.pos + np.arange(h)) % state.period
    return state.level + damp * state.trend + state.season[idx]


def run(state: SmoothingState, values: FloatArray) -> SmoothingState:
    """Feed ``values`` (the steps right after the state, NaN = missing) through the filter."""
    final, _ = _filter(state, values, horizon=0, stride=1)
    return final


def rolling_forecasts(
    state: SmoothingState, values: FloatArray, *, horizon: int, stride: int = 1
) -> tuple[SmoothingState, FloatArray]:
    """Forecasts from every ``stride``-th origin while feeding ``values`` (rolling origin).

    Row ``j`` holds the ``horizon``-step forecast made just before ``values[j * stride]`` was
    seen, so it is compared with ``values[j * stride : j * stride + horizon]``. Parameters stay
    fixed; only the states move, exactly as ``update`` would move them between refits.
    """
    return _filter(state, values, horizon=horizon, stride=stride)


def _filter(
    state: SmoothingState, values: FloatArray, *, horizon: int, stride: int
) -> tuple[SmoothingState, FloatArray]:
    # A plain Python loop over floats (~1 us a step; numpy scalar ops would be 10x slower), kept
    # in one function on purpose: this is the hot path of every backtest and update. The
    # forecast rows are not made in the loop (a numpy expression per origin was 90 % of a
    # rolling backtest's time): the loop records what each row needs and _rows makes them all.
    level, trend, pos, zero_run = state.level, state.trend, state.pos, state.zero_run
    shift_error, shift_steps, shift_run = state.shift_error, state.shift_steps, state.shift_run
    # Copy the profile only when it changes (gamma > 0); read it with .item() (a Python float):
    # cheaper than a tolist() round trip of a 10,080-slot weekly profile on a 1-step update.
    season_arr = state.season.copy() if state.gamma > 0.0 else state.season
    period = season_arr.shape[0]
    alpha, beta, gamma, phi = state.alpha, state.beta, state.gamma, state.phi
    clip, gap_level, max_gap = state.error_clip, state.gap_min_level, state.max_gap_steps
    gap_fraction = state.gap_fraction
    levels: list[float] = []
    trends: list[float] = []
    visited: list[float] = []  # season[pos] after each step: what later rows read of it
    track = horizon > 0 and gamma > 0.0
    for i, y in enumerate(values.tolist()):
        if horizon > 0 and i % stride == 0:
            levels.append(level)
            trends.append(trend)
        yhat = level + phi * trend + season_arr.item(pos)
        if y <= gap_fraction * yhat and yhat >= gap_level and zero_run < max_gap:
            zero_run += 1
            y = math.nan
        elif y == y:
            zero_run = 0
        if y == y:  # not NaN
            raw = y - yhat
            e = clip if raw > clip else (-clip if raw < -clip else raw)
            level = level + phi * trend + alpha * e
            if raw > shift_error:
                shift_run = shift_run + 1 if shift_run > 0 else 1
            elif raw < -shift_error:
                shift_run = shift_run - 1 if shift_run < 0 else -1
            elif shift_run:
                shift_run = 0
            if shift_run >= shift_steps or -shift_run >= shift_steps:
                level += raw - alpha * e  # a level shift: make this step's forecast exact
                shift_run = 0
            trend = phi * trend + beta * e
            if gamma > 0.0:
                season_arr[pos] += gamma * e
        else:
            level = level + phi * trend
            trend = phi * trend
        if track:
            visited.append(season_arr.item(pos))
        pos = (pos + 1) % period
    final = replace(
        state,
        level=level,
        trend=trend,
        season=season_arr,
        pos=pos,
        zero_run=zero_run,
        shift_run=shift_run,
    )
    return final, _rows(state, levels, trends, visited, horizon=horizon, stride=stride)


def _rows(state: SmoothingState, levels: list[float], trends: list[float], visited: list[float],
          *, horizon: int, stride: int) -> FloatArray:
    """The forecast rows of :func:`_filter`: row ``r``, made before step ``i = r * stride``, is
    ``level + damp * trend + season[(pos + k) % period]`` with that step's level, trend, pos and
    profile - the same floats as working each row out in the loop.

    A fixed profile (``gamma = 0``) is read as it is. A moving one is read as each row saw it:
    slot ``(pos_i + k) % period`` was last written at step ``i + k % period - period`` (the
    filter writes one slot per step, in turn), so it holds ``visited`` there, or its starting
    value when that step lies before the first.
    """
    if horizon == 0:  # ``run``: no rows
        return np.empty((0, 0))
    period = state.period
    origin = np.arange(len(levels)) * stride
    offsets = np.arange(horizon)
    if state.gamma > 0.0:
        start = state.season[(state.pos + np.arange(-period, 0)) % period]
        season = np.concatenate([start, np.asarray(visited, dtype=np.float64)])[origin[:, None] + offsets % period]
    else:
        season = state.season[(state.pos + origin[:, None] + offsets) % period]
    damp = np.cumsum(np.full(horizon, state.phi) ** np.arange(1, horizon + 1))
    level = np.asarray(levels, dtype=np.float64).reshape(-1, 1)
    trend = np.asarray(trends, dtype=np.float64).reshape(-1, 1)
    rows: FloatArray = level + damp * trend + season
    return rows.reshape(len(levels), horizon)
