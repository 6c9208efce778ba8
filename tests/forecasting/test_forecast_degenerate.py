"""Property tests on what real traffic does: zeros, constants, spikes, NaN runs, short history."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecasting import FittedForecaster, InsufficientDataError, Series, fit_auto

STEP = 3600  # hourly: statsmodels fits take milliseconds, so hypothesis can try many series
H = 3
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _assert_sane(fitted: FittedForecaster, h: int = 8) -> None:
    forecast = fitted.forecast(h)
    for path in (forecast.mean, *forecast.quantiles.values()):
        assert np.isfinite(path).all() and (path >= 0).all()
    assert (forecast.quantile(0.9) >= forecast.mean).all()
    assert fitted.reason
    assert fitted.skill is None or (math.isfinite(fitted.skill) and fitted.skill >= 0)


@pytest.mark.parametrize("days", [1, 3, 16])
def test_all_zeros_forecast_zero(days: int) -> None:
    fitted = fit_auto(Series(0, STEP, np.zeros(days * 24)), horizon_steps=H)
    forecast = fitted.forecast(5)
    assert (forecast.mean == 0).all() and (forecast.quantile(0.95) == 0).all()


@pytest.mark.parametrize("value", [1.0, 42.0, 1e6])
def test_constant_forecasts_the_constant(value: float) -> None:
    fitted = fit_auto(Series(0, STEP, np.full(10 * 24, value)), horizon_steps=H)
    np.testing.assert_allclose(fitted.forecast(5).mean, value, rtol=1e-6)
    assert fitted.skill is None and "no error" in fitted.reason


def test_one_spike_does_not_become_a_season() -> None:
    values = np.full(10 * 24, 100.0)
    values[-30] = 10_000.0  # one burst 30 hours ago, same hour as tomorrow's step 6
    fitted = fit_auto(Series(0, STEP, values), horizon_steps=H)
    _assert_sane(fitted)
    assert fitted.forecast(24).mean.max() < 2_000


def test_collection_gap_zeros_are_not_learned() -> None:
    day = 100 + 50 * np.sin(2 * np.pi * np.arange(24) / 24)
    values = np.tile(day, 10)
    values[-24 + 2 : -24 + 5] = 0.0  # yesterday 02:00-05:00 the collector was down
    fitted = fit_auto(Series(0, STEP, values), horizon_steps=H)
    assert fitted.diagnostics.n_gap_zeros == 3
    assert fitted.forecast(6).mean[2:5].min() > 50


def test_update_treats_zeros_amid_traffic_as_a_gap() -> None:
    values = np.tile(100 + 50 * np.sin(2 * np.pi * np.arange(24) / 24), 10)
    fitted = fit_auto(Series(0, STEP, values), horizon_steps=H)
    after_gap = fitted.update(Series(fitted.end, STEP, np.zeros(3)))
    assert after_gap.forecast(3).mean.min() > 50


@pytest.mark.parametrize("n", [1, 2, 5, 23])
def test_too_short_for_any_season(n: int) -> None:
    fitted = fit_auto(Series(0, STEP, np.arange(1.0, n + 1)), horizon_steps=H)
    _assert_sane(fitted)
    assert fitted.skill is None and "too short" in fitted.reason


def test_no_observation_is_a_clear_error() -> None:
    with pytest.raises(InsufficientDataError, match="no observation"):
        fit_auto(Series(0, STEP, np.full(48, np.nan)), horizon_steps=H)


def test_negative_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        fit_auto(Series(0, STEP, np.array([1.0, -1.0, 2.0])), horizon_steps=H)


@PROPERTY
@given(
    days=st.integers(min_value=1, max_value=9),
    nan_start=st.floats(min_value=0, max_value=1),
    nan_len=st.integers(min_value=0, max_value=60),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_nan_runs_never_leak_into_forecasts(
    days: int, nan_start: float, nan_len: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.poisson(50 + 40 * np.sin(np.arange(days * 24) * 2 * np.pi / 24)).astype(float)
    start = int(nan_start * len(values))
    values[start : start + nan_len] = np.nan
    if np.isnan(values).all():
        values[-1] = 1.0
    _assert_sane(fit_auto(Series(0, STEP, values), horizon_steps=H))


@PROPERTY
@given(st.lists(st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1e7)),
                min_size=1, max_size=120))
def test_arbitrary_non_negative_series(values: list[float]) -> None:
    _assert_sane(fit_auto(Series(0, STEP, np.array(values)), horizon_steps=H))


def test_update_follows_a_level_shift_within_hours() -> None:
    """Bursts are clipped, but a sustained doubling must get through within a few steps."""
    day = 100 + 50 * np.sin(2 * np.pi * np.arange(24) / 24)
    rng = np.random.default_rng(3)
    values = np.tile(day, 10) + rng.normal(0, 3, 240)
    fitted = fit_auto(Series(0, STEP, values), horizon_steps=H)
    doubled = 2 * np.tile(day, 2)[:6]
    moved = fitted.update(Series(fitted.end, STEP, doubled))
    expected = 2 * np.tile(day, 2)[6:9]
    np.testing.assert_allclose(moved.forecast(3).mean, expected, rtol=0.35)


def test_one_burst_in_update_moves_the_level_a_bounded_amount() -> None:
    day = 100 + 50 * np.sin(2 * np.pi * np.arange(24) / 24)
    values = np.tile(day, 10) + np.random.default_rng(4).normal(0, 3, 240)
    fitted = fit_auto(Series(0, STEP, values), horizon_steps=H)
    calm = fitted.forecast(2).mean
    burst = fitted.update(Series(fitted.end, STEP, np.array([100 * calm[0]])))
    assert burst.forecast(1).mean[0] < calm[1] + 100


class _Broken:
    """A candidate whose estimator blows up, as statsmodels can on odd data."""

    name = "broken"

    def min_obs(self, *, step_seconds: int) -> int:
        return 1

    def fit_state(self, values: np.ndarray, *, step_seconds: int) -> object:
        raise np.linalg.LinAlgError("singular matrix")


def test_a_failing_candidate_is_skipped_and_recorded() -> None:
    from forecasting import SeasonalNaive

    values = np.tile(100 + 50 * np.sin(2 * np.pi * np.arange(24) / 24), 5)
    fitted = fit_auto(Series(0, STEP, values), horizon_steps=H,
                      candidates=[_Broken(), SeasonalNaive()])  # type: ignore[list-item]
    assert fitted.name == "seasonal_naive_1d"
    assert any("broken failed" in w for w in fitted.diagnostics.warnings)
