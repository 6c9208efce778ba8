"""Fit at a coarse step, track the level at the fine one: 1-minute data without 1-minute fits.

A daily profile is smooth at the scale of minutes, and statsmodels' fit time grows with the
number of points (Holt-Winters 0.64 s at 1-min vs 0.08 s at 5-min over 14 days; ENVIRONMENT.md).
So models fit their seasonal profile and smoothing parameters on block means at about
``MAX_POINTS_PER_DAY`` points a day, then the state is *refined*: the profile is interpolated onto
the fine grid and the smoothing constants converted to keep the same time constants. ``update``
then follows the level at the series' own step.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from forecasting.smoothing import SmoothingState

MAX_POINTS_PER_DAY = 144
"""Coarsest useful resolution for a daily profile: 10-minute buckets."""


def fit_factor(step_seconds: int, *, max_points_per_day: int = MAX_POINTS_PER_DAY) -> int:
    """How many fine steps make one fitting step (1 = fit at the series' own step).

    The factor divides one day, so coarse and fine daily periods line up exactly
    (1-minute data -> 10-minute fits; 5-minute -> 10-minute; 10-minute and coarser -> as is).
    """
    per_day = 86400 // step_seconds if 86400 % step_seconds == 0 else 0
    if per_day <= max_points_per_day:
        return 1
    factor = math.ceil(per_day / max_points_per_day)
    while per_day % factor:
        factor += 1
    return factor


def refine(state: SmoothingState, factor: int) -> SmoothingState:
    """The coarse state as a fine-step state with the same dynamics, positioned at ``pos = 0``.

    - profile: periodic linear interpolation between coarse bucket centres;
    - ``alpha``: same time constant, ``1 - (1 - a) ** (1 / k)`` per fine step;
    - trend per fine step = trend / k, ``phi ** (1 / k)``, ``beta / k**2`` (a coarse trend
      correction spread over k fine steps, each moving the trend by 1/k as much per step);
    - ``gamma`` unchanged: each fine slot is corrected once a season, like its coarse bucket.
    """
    if factor == 1:
        return state
    coarse = np.roll(state.season, -state.pos)
    period = coarse.shape[0] * factor
    centres = np.arange(coarse.shape[0]) * factor + (factor - 1) / 2
    fine = np.interp(np.arange(period), centres, coarse, period=period) if coarse.shape[0] > 1 \
        else np.full(factor if period > 1 else 1, coarse[0])[:1]
    return replace(
        state,
        season=fine,
        pos=0,
        trend=state.trend / factor,
        alpha=1.0 - (1.0 - state.alpha) ** (1.0 / factor),
        beta=state.beta / factor**2,
        phi=state.phi ** (1.0 / factor),
    )
