"""The contract every forecaster passes (after statsforecast's ``assert_class``)."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable

import numpy as np
import pytest

from forecasting import FittedForecaster, Series, fit_auto
from forecasting.fitted import FittedModel
from forecasting.models import MSTLETS, DampedETS, HoltWintersDamped
from forecasting.naive import SeasonalNaive

H = 6
QUANTILES = (0.1, 0.5, 0.9, 0.95)

Fit = Callable[[Series], FittedModel]

FITTERS = [
    pytest.param(lambda s: SeasonalNaive(season_seconds=86400).fit(
        s, horizon_steps=H, quantiles=QUANTILES), id="seasonal_naive_1d"),
    pytest.param(lambda s: SeasonalNaive(season_seconds=604800).fit(
        s, horizon_steps=H, quantiles=QUANTILES), id="seasonal_naive_7d"),
    pytest.param(lambda s: HoltWintersDamped().fit(
        s, horizon_steps=H, quantiles=QUANTILES), id="holt_winters_damped"),
    pytest.param(lambda s: MSTLETS().fit(s, horizon_steps=H, quantiles=QUANTILES), id="mstl_ets"),
    pytest.param(lambda s: DampedETS().fit(s, horizon_steps=H, quantiles=QUANTILES),
                 id="ets_damped"),
    pytest.param(lambda s: fit_auto(s, horizon_steps=H, quantiles=QUANTILES), id="fit_auto"),
]


def _check_forecast(fitted: FittedForecaster, h: int) -> None:
    forecast = fitted.forecast(h)
    assert forecast.h == h
    assert forecast.origin == fitted.end
    assert forecast.step_seconds == fitted.step_seconds
    assert set(forecast.quantiles) == set(QUANTILES)
    paths = [forecast.mean, *forecast.quantiles.values()]
    for path in paths:
        assert path.shape == (h,)
        assert np.isfinite(path).all()
        assert (path >= 0).all()
    lower, upper = forecast.quantile(0.1), forecast.quantile(0.95)
    assert (lower <= forecast.mean).all()
    assert (forecast.mean <= upper).all()
    ordered = [forecast.quantiles[q] for q in sorted(forecast.quantiles)]
    for a, b in itertools.pairwise(ordered):
        assert (a <= b).all()


@pytest.mark.parametrize("fit", FITTERS)
@pytest.mark.parametrize("h", [1, H, 3 * H])
def test_forecast_shape_order_and_bounds(fit: Fit, h: int, hourly: Series) -> None:
    _check_forecast(fit(hourly), h)


@pytest.mark.parametrize("fit", FITTERS)
def test_deterministic_and_picklable(fit: Fit, hourly: Series) -> None:
    first, second = fit(hourly), fit(hourly)
    clone = pickle.loads(pickle.dumps(first))
    for other in (second, clone):
        assert other.name == first.name
        np.testing.assert_array_equal(other.forecast(H).mean, first.forecast(H).mean)
        np.testing.assert_array_equal(other.forecast(H).quantile(0.9),
                                      first.forecast(H).quantile(0.9))


@pytest.mark.parametrize("spec", [SeasonalNaive(), HoltWintersDamped(), MSTLETS(), DampedETS()],
                         ids=lambda s: s.name)
def test_fit_then_forecast_equals_one_shot(spec: SeasonalNaive, hourly: Series) -> None:
    fitted = spec.fit(hourly, horizon_steps=H, quantiles=QUANTILES).forecast(H)
    one_shot = spec.forecast(hourly, h=H, quantiles=QUANTILES)
    np.testing.assert_array_equal(fitted.mean, one_shot.mean)
    for q in QUANTILES:
        np.testing.assert_array_equal(fitted.quantile(q), one_shot.quantile(q))


@pytest.mark.parametrize("fit", FITTERS)
def test_update_is_pure_and_chains(fit: Fit, hourly: Series) -> None:
    head = Series(hourly.start, hourly.step_seconds, hourly.values[:-10])
    fitted = fit(head)
    before = fitted.forecast(H).mean.copy()
    tail = hourly.values[-10:]
    once = fitted.update(Series(head.end, head.step_seconds, tail))
    twice = fitted.update(Series(head.end, head.step_seconds, tail[:4])).update(
        Series(head.end + 4 * head.step_seconds, head.step_seconds, tail[4:]))
    np.testing.assert_array_equal(fitted.forecast(H).mean, before)  # immutable
    assert once.end == hourly.end
    np.testing.assert_allclose(once.forecast(H).mean, twice.forecast(H).mean)
    _check_forecast(once, H)


def test_fitted_models_satisfy_the_protocol(hourly: Series) -> None:
    assert isinstance(fit_auto(hourly, horizon_steps=H), FittedForecaster)
