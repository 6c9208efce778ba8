"""Seasonal demand forecasting with calibrated quantiles (pure: numpy + statsmodels).

Importing this package is cheap: statsmodels is imported lazily inside the fitting functions.

>>> from forecasting import fit_auto, synthetic_trace
>>> history = synthetic_trace(days=3, step_seconds=600).series
>>> fitted = fit_auto(history, horizon_steps=3)
>>> fitted.forecast(6).quantile(0.9).shape
(6,)
"""

from forecasting.auto import fit_auto
from forecasting.base import Forecaster
from forecasting.cleaning import GapPolicy
from forecasting.fitted import FittedForecaster, FittedModel
from forecasting.naive import SeasonalNaive
from forecasting.selection import InsufficientDataError
from forecasting.traces import Trace, TraceError, read_trace, synthetic_trace
from forecasting.types import FitDiagnostics, Forecast, Series

__all__ = [
    "FitDiagnostics",
    "FittedForecaster",
    "FittedModel",
    "Forecast",
    "Forecaster",
    "GapPolicy",
    "InsufficientDataError",
    "SeasonalNaive",
    "Series",
    "Trace",
    "TraceError",
    "fit_auto",
    "read_trace",
    "synthetic_trace",
]
