"""How the scaler asks a fitted forecaster for the window it decides on.

Shared by ``prewarm serve`` (``scaler.engine``) and ``prewarm backtest`` so the backtest measures
exactly what the daemon does: the same horizon arithmetic, the same demotion rule.
"""

from __future__ import annotations

import math


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
