"""The forecast tape filled by worker processes while the backtest goes on: the same forecasts as
filled in-process, read at any minute before it is complete, and a worker's error surfaces."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from scaler.backtest import tape
from scaler.backtest.sweep import progress_steps, run_backtest
from scaler.backtest.tape import ForecastTape, TapeSpec
from tests.backtest.support import synthetic
from tests.backtest.test_backtest_lookahead import SPEC

TAPE = TapeSpec(horizon_seconds=600, fit_horizon_steps=10, refit_every=360, first_fit=1440, history=1440)


def test_a_pool_fills_the_same_tape_as_this_process() -> None:
    sc = synthetic(days=3)
    tape.clear_cache()
    here = ForecastTape(sc, TAPE, jobs=1).complete()
    tape.clear_cache()
    pooled = ForecastTape(sc, TAPE, jobs=2)
    # Read in the middle first: the reader waits for that segment, not for the whole tape.
    t = 2 * 1440 + 17
    forecast, note = pooled.at(t)
    assert forecast is not None and note == ""
    assert pooled.at(5) == (None, "no forecaster fitted yet")
    pooled.complete()
    assert sorted(pooled.fits) == sorted(here.fits) == TAPE.fit_minutes(sc.minutes)
    assert pooled.forecasts.keys() == here.forecasts.keys()
    assert min(here.forecasts) == 1440 and max(here.forecasts) == sc.minutes - 1
    for minute, mine in here.forecasts.items():
        theirs = pooled.forecasts[minute]
        assert (mine is None) == (theirs is None)
        if mine is not None and theirs is not None:
            np.testing.assert_allclose(theirs.mean, mine.mean, rtol=1e-9, atol=1e-9)
            for q, path in mine.quantiles.items():
                np.testing.assert_allclose(theirs.quantiles[q], path, rtol=1e-9, atol=1e-9)
    assert pooled.seconds > 0


def test_a_failing_segment_is_raised_to_the_reader() -> None:
    sc = synthetic(days=3)
    tape.clear_cache()
    broken = dataclasses.replace(TAPE, horizon_seconds=math.nan)  # fails in the worker
    pooled = ForecastTape(sc, broken, jobs=2)
    with pytest.raises(ValueError):
        pooled.at(sc.minutes - 1)


def test_the_backtest_is_the_same_with_a_pool() -> None:
    sc = synthetic(days=3)
    spec = dataclasses.replace(SPEC, slo=0.99, policies=("reactive-util", "static", "predictive"))
    tape.clear_cache()
    here = run_backtest(sc, spec)
    tape.clear_cache()
    pooled = run_backtest(sc, dataclasses.replace(spec, jobs=2))
    for name, sweep in here.sweeps.items():
        assert [p.gpu_hours for p in pooled.sweeps[name].points] == [p.gpu_hours for p in sweep.points]
    assert here.auto is not None and pooled.auto is not None
    assert pooled.auto.gpu_hours == here.auto.gpu_hours
    assert pooled.auto.slo_attainment == here.auto.slo_attainment
    assert set(pooled.seconds) == set(here.seconds) == {"forecasts", "auto", *spec.policies}


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_progress_bar_ends_full(jobs: int) -> None:
    """Fits, sweep points and the self-tuned run's days add up to the bar's total."""
    sc = synthetic(days=3)
    spec = dataclasses.replace(SPEC, slo=0.99, policies=("reactive-util", "static"), jobs=jobs)
    ticks: list[int] = []
    tape.clear_cache()
    run_backtest(sc, spec, progress=ticks.append)
    assert sum(ticks) == progress_steps(sc, spec)
    assert ticks.count(1) >= 3  # a tick a simulated day (3 days), not one at the end
