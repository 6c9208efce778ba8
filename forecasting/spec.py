"""Fitting for every model specification: the one path ``fit_auto`` calibrates through.

A separate module from :mod:`forecasting.base` so that ``base`` (the protocol and helpers) and
``selection`` (fitting and calibration) never import each other: specs import this, this imports
``selection``, and ``selection`` imports only ``base``.
"""

from __future__ import annotations

from collections.abc import Sequence

from forecasting.base import DEFAULT_QUANTILES
from forecasting.fitted import FittedModel
from forecasting.selection import fit_model
from forecasting.types import Forecast, Series


class ForecasterMixin:
    """``fit`` / ``forecast`` for a :class:`Forecaster`: the calibration path of ``fit_auto``.
    """

    def fit(
        self,
        series: Series,
        *,
        horizon_steps: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> FittedModel:
        return fit_model(self, series, horizon_steps=horizon_steps, quantiles=quantiles)  # type: ignore[arg-type]

    def forecast(
        self, series: Series, *, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        """One-shot ``fit(series, horizon_steps=h).forecast(h)``."""
        return self.fit(series, horizon_steps=h, quantiles=quantiles).forecast(h)
