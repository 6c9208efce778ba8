"""How the scaler asks a fitted forecaster for the window it decides on.

Shared by ``prewarm serve`` (``scaler.engine``) and ``prewarm backtest`` so the backtest measures
exactly what the daemon does: the same horizon arithmetic, the same demotion rule.
"""

from __future__ import annotations

import logging
import math

from forecasting.fitted import FittedForecaster
from forecasting.types import Series

log = logging.getLogger("prewarm.engine")


def fit_horizon_steps(lead_seconds: float, step_seconds: float) -> int:
    """Horizon a forecaster is selected and calibrated for: the lead in steps, at least 1."""
    return max(1, math.ceil(lead_seconds / step_seconds))


def forecast_steps(*, origin: float, now: float, horizon_seconds: float, step_seconds: float) -> int:
    """Steps from ``origin`` (the forecaster's ``end``) that cover [now, now + horizon].

    E.g. origin 12:00, now 12:04, horizon 20 min, 5-min steps: ceil(24 / 5) + 1 = 6 steps
    (12:00 ... 12:25), so the step holding now + horizon is included.
    """
    return max(1, math.ceil((now + horizon_seconds - origin) / step_seconds) + 1)


def demotion_note(name: str, skill: float | None, max_skill: float) -> str | None:
    """Why a forecaster is not used (skill = MASE vs seasonal naive >= maxSkill), or None."""
    if skill is None or skill < max_skill:
        return None
    return f"forecast demoted: {name} skill {skill:.2f} >= maxSkill {max_skill:g}"


QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.99)
"""The levels every fit provides (serve and the backtest alike); policies pick among them."""


def fit_job(series: Series, horizon_steps: int, seasons: tuple[int, ...]) -> FittedForecaster:
    """Runs in a worker process: fit and select a forecaster for one model's history."""
    from forecasting import fit_auto

    return fit_auto(series, horizon_steps=horizon_steps, quantiles=QUANTILES,
                    seasons_seconds=seasons)


def catch_up(fitted: FittedForecaster, completed: Series) -> FittedForecaster:
    """Feed the forecaster the buckets completed since it last saw data (an online level update;
    serve refits hourly, and this keeps the level current between refits)."""
    first = max(0, round((fitted.end - completed.start) / completed.step_seconds))
    new = Series(start=completed.start + first * completed.step_seconds,
                 step_seconds=completed.step_seconds, values=completed.values[first:])
    if len(new) == 0:
        return fitted
    try:
        return fitted.update(new)
    except Exception:
        log.exception("forecaster update failed; forecasting from the last fit")
        return fitted
