"""Candidate models for ``fit_auto``."""

from __future__ import annotations

from collections.abc import Sequence

from forecasting.base import Forecaster, period_steps
from forecasting.naive import SeasonalNaive


def candidate_models(
    seasons_seconds: Sequence[int], *, step_seconds: int, train_steps: int
) -> list[Forecaster]:
    """Eligible models for ``train_steps`` of training history, simplest first."""
    out: list[Forecaster] = []
    for season in sorted(seasons_seconds):
        if 1 < period_steps(season, step_seconds) <= train_steps:
            out.append(SeasonalNaive(season_seconds=season))
    return out
