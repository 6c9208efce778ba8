"""The public API the scaler depends on."""

from __future__ import annotations

import pickle

import numpy as np

import forecasting
from forecasting import FittedForecaster, Series, fit_auto


def _daily(days: int = 4, step: int = 600) -> Series:
    t = np.arange(days * 86400 // step)
    per_day = 86400 // step
    values = 100 + 50 * np.sin(2 * np.pi * t / per_day)
    values += np.random.default_rng(0).normal(0, 3, t.shape[0])
    return Series(0.0, step, values)


def test_fit_auto_returns_a_picklable_fitted_forecaster() -> None:
    series = _daily()
    fitted = fit_auto(series, horizon_steps=3)
    assert isinstance(fitted, FittedForecaster)
    assert fitted.end == series.end
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone.forecast(6).mean, fitted.forecast(6).mean)


def test_update_then_forecast_moves_origin() -> None:
    series = _daily()
    fitted = fit_auto(series, horizon_steps=3)
    recent = Series(series.end, series.step_seconds, np.array([150.0, 160.0]))
    moved = fitted.update(recent)
    forecast = moved.forecast(4)
    assert forecast.origin == series.end + 2 * series.step_seconds
    assert forecast.quantile(0.9).shape == (4,)


def test_public_names() -> None:
    for name in ("Series", "Forecast", "FittedForecaster", "fit_auto", "SeasonalNaive",
                 "FitDiagnostics"):
        assert hasattr(forecasting, name)
