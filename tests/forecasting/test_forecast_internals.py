"""Building blocks: the shared filter, conformal calibration, gap masking, resolution."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecasting import Series
from forecasting.calibration import calibrate
from forecasting.cleaning import GapPolicy, aggregate, fill_missing, mask_collection_gaps
from forecasting.fitted import align_after
from forecasting.resolution import fit_factor, refine
from forecasting.smoothing import SmoothingState, predict, rolling_forecasts, run


def test_filter_reproduces_statsmodels_holt_winters() -> None:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    t = np.arange(24 * 8)
    y = 100 + 30 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(0).normal(0, 3, t.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add",
                                   seasonal_periods=24, initialization_method="heuristic"
                                   ).fit(use_brute=False)
    p = res.params
    state = SmoothingState(level=p["initial_level"], trend=p["initial_trend"],
                           season=np.asarray(p["initial_seasons"]), alpha=p["smoothing_level"],
                           beta=p["smoothing_level"] * p["smoothing_trend"],
                           gamma=p["smoothing_seasonal"], phi=p["damping_trend"])
    final, one_step = rolling_forecasts(state, y, horizon=1)
    np.testing.assert_allclose(one_step[:, 0], res.fittedvalues, rtol=1e-8)
    np.testing.assert_allclose(predict(final, 5), res.forecast(5), rtol=1e-8)


@pytest.mark.parametrize("gamma", [0.0, 0.3])
@pytest.mark.parametrize(("horizon", "stride"), [(1, 1), (5, 1), (11, 3), (30, 2)])
def test_rolling_rows_are_the_forecasts_of_the_state_at_each_origin(gamma: float, horizon: int,
                                                                     stride: int) -> None:
    """Each row equals ``predict`` from the state the filter had reached at its origin, to the
    last bit: a moving profile (gamma > 0) read as it stood then, horizons past a whole period
    (12 slots), missing steps, gap zeros, clipped errors and level shifts included."""
    rng = np.random.default_rng(7)
    n, period = 120, 12
    y = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / period) + rng.normal(0, 2, n)
    y[rng.random(n) < 0.1] = np.nan
    y[40:43] = 0.0  # a collection gap
    y[80:] += 30.0  # a level shift
    state = SmoothingState(level=50.0, trend=0.1, season=rng.normal(0, 5, period), pos=5,
                           alpha=0.4, beta=0.05, gamma=gamma, phi=0.95, error_clip=15.0,
                           gap_min_level=10.0, max_gap_steps=5, shift_error=12.0)
    final, rows = rolling_forecasts(state, y, horizon=horizon, stride=stride)
    origins = range(0, n, stride)
    assert rows.shape == (len(origins), horizon)
    for r, i in enumerate(origins):
        np.testing.assert_array_equal(rows[r], predict(run(state, y[:i]), horizon))
    np.testing.assert_array_equal(final.season, run(state, y).season)


def test_nan_advances_time_without_correction() -> None:
    state = SmoothingState(level=10.0, trend=1.0, season=np.zeros(1), alpha=0.5, beta=0.1,
                           phi=0.9)
    moved = run(state, np.array([np.nan, np.nan]))
    assert moved.level == pytest.approx(10 + 0.9 + 0.81)
    assert moved.trend == pytest.approx(0.81)


def test_conformal_quantiles_cover_on_unseen_noise() -> None:
    rng = np.random.default_rng(1)
    actual = rng.normal(0, 1, (4000, 3))
    calibration = calibrate(actual[:2000], np.zeros((2000, 3)), levels=(0.1, 0.9), power=0.0,
                            floor=1.0)
    _, paths = calibration.bands(np.full(3, 50.0))  # raw mean 50: errors add to it
    covered = np.mean(actual[2000:] + 50 <= paths[0.9][None, :])
    assert 0.88 <= covered <= 0.92


@pytest.mark.parametrize(
    ("values", "masked"),
    [
        pytest.param([50, 60, 55] * 5 + [0, 0] + [55, 50] * 5, 2, id="gap-amid-traffic"),
        pytest.param([1, 0, 2, 0, 0, 1] * 5, 0, id="sparse-low-traffic"),
        pytest.param([0, 0] + [50, 60] * 20, 0, id="leading-zeros-no-context"),
        pytest.param([50, 60, 55] * 10 + [0, 0], 2, id="trailing-gap"),
        pytest.param([5e5] * 30 + [8e3, 0, 0, 3e3] + [6e5] * 10, 4, id="partial-buckets"),
        pytest.param([5e5] * 30 + [4e5, 3e5] + [6e5] * 10, 0, id="real-dip"),
        pytest.param([0, 0, 0, 500, 0, 0, 0, 0, 700, 0] * 5, 0, id="on-off-client"),
    ],
)
def test_mask_collection_gaps(values: list[float], masked: int) -> None:
    mask = mask_collection_gaps(np.array(values, float), step_seconds=600, policy=GapPolicy())
    assert mask.masked == masked == int(np.isnan(mask.values).sum())


def test_on_off_series_disables_gap_masking() -> None:
    mask = mask_collection_gaps(np.array([0, 0, 0, 500, 0, 0, 0, 0, 700, 0] * 5, float),
                                step_seconds=600, policy=GapPolicy())
    assert not mask.enabled


def test_long_zero_runs_are_believed() -> None:
    values = np.array([50.0] * 400 + [0.0] * 40 + [50.0] * 6)
    mask = mask_collection_gaps(values, step_seconds=600, policy=GapPolicy(max_run_seconds=3600))
    assert mask.masked == 0 and mask.enabled


def test_fill_missing_uses_the_same_time_yesterday() -> None:
    values = np.array([1.0, 2, 3, 4, 1, np.nan, 3, 4])
    np.testing.assert_array_equal(fill_missing(values, period=4), [1, 2, 3, 4, 1, 2, 3, 4])


def test_aggregate_aligns_to_the_end() -> None:
    np.testing.assert_array_equal(aggregate(np.arange(7.0), 3), [2.0, 5.0])


@pytest.mark.parametrize(("step", "factor"), [(60, 10), (300, 2), (600, 1), (3600, 1), (30, 20)])
def test_fit_factor_divides_a_day(step: int, factor: int) -> None:
    assert fit_factor(step) == factor


def test_refine_keeps_level_and_profile_shape() -> None:
    coarse = SmoothingState(level=100.0, trend=2.0, season=np.array([0.0, 10.0, 0.0, -10.0]),
                            pos=1, alpha=0.5, phi=0.9)
    fine = refine(coarse, 10)
    assert fine.period == 40 and fine.pos == 0
    assert int(np.argmax(fine.season)) in (4, 5)  # peak at the centre of the next bucket
    assert fine.season[4] == pytest.approx(9.5)  # linear between bucket centres
    assert fine.trend == pytest.approx(0.2)
    assert 1 - (1 - fine.alpha) ** 10 == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param(100.0, [1.0, 2.0], id="contiguous"),
        pytest.param(110.0, [np.nan, 1.0, 2.0], id="gap"),
        pytest.param(90.0, [2.0], id="overlap"),
    ],
)
def test_align_after(start: float, expected: list[float]) -> None:
    out = align_after(Series(start, 10, np.array([1.0, 2.0])), end=100.0, step_seconds=10)
    np.testing.assert_array_equal(out, expected)


def test_align_after_rejects_off_grid_and_other_steps() -> None:
    with pytest.raises(ValueError, match="not on the model's 10 s grid"):
        align_after(Series(105.0, 10, np.ones(2)), end=100.0, step_seconds=10)
    with pytest.raises(ValueError, match="step is 20 s"):
        align_after(Series(100.0, 20, np.ones(2)), end=100.0, step_seconds=10)


def test_mstl_two_inner_passes_decompose_as_statsmodels_five_do() -> None:
    """MSTLETS runs STL's inner loop twice (Cleveland et al.'s choice without robustness
    iterations), not statsmodels' five: half the fit time, and the same seasonal profile to
    within 0.5 % of its amplitude on three weeks of a noisy daily + weekly cycle."""
    from forecasting.models import MSTLETS

    t = np.arange(21 * 144)  # three weeks at 10-minute steps, as the scaler fits
    rng = np.random.default_rng(3)
    y = (200 + 80 * np.sin(2 * np.pi * t / 144) + 30 * np.sin(2 * np.pi * t / 1008)
         + 0.05 * t + rng.normal(0, 15, t.size))
    two = MSTLETS()._decompose(y, [144, 1008])
    five = MSTLETS(inner_iterations=5)._decompose(y, [144, 1008])
    amplitude = float(np.ptp(five.sum(axis=0)))
    assert MSTLETS().inner_iterations == 2
    assert np.max(np.abs(two - five)) < 0.005 * amplitude
    assert not np.array_equal(two, five)  # the setting reaches STL
    with pytest.raises(ValueError, match="inner_iterations = 0"):
        MSTLETS(inner_iterations=0)
