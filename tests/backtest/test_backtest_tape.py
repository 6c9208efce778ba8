"""The forecast tape filled by worker processes while the backtest goes on: the same forecasts as
filled in-process, read at any minute before it is complete, and a worker's error surfaces."""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest

from forecasting.fitted import FittedModel
from forecasting.models import MSTLETS, HoltWintersDamped
from forecasting.types import Forecast, Series
from scaler.backtest import tape
from scaler.backtest.sweep import (
    build_tape,
    progress_steps,
    run_backtest,
    run_sweep,
    shared_sweep,
    ticks_from_workers,
)
from scaler.backtest.tape import ForecastTape, Packed, TapeSpec, worker_pool
from scaler.core.forecasts import QUANTILES, fit_job
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
    """Fits, sweep points (the workers' too, one by one) and the self-tuned run's days add up to
    the bar's total."""
    sc = synthetic(days=3)
    spec = dataclasses.replace(SPEC, slo=0.99, policies=("reactive-util", "static", "predictive"), jobs=jobs)
    ticks: list[int] = []
    tape.clear_cache()
    run_backtest(sc, spec, progress=ticks.append)
    assert sum(ticks) == progress_steps(sc, spec)
    assert ticks.count(1) >= 3  # a tick a simulated day (3 days), not one at the end
    assert set(ticks) == {1}  # the baselines' points too, each as it is simulated


def test_packed_forecasts_come_back_the_same() -> None:
    """What crosses between processes: every forecast of a tape, as arrays, and back."""
    sc = synthetic(days=3)
    tape.clear_cache()
    made = ForecastTape(sc, TAPE, jobs=1).complete()
    forecasts = {t: f for t, f in made.forecasts.items() if f is not None}
    half = sorted(forecasts)[len(forecasts) // 2]
    packed = Packed.join([Packed.of({t: f for t, f in forecasts.items() if t < half}), Packed.of({}),
                          Packed.of({t: f for t, f in forecasts.items() if t >= half})])
    back = pickle.loads(pickle.dumps(packed)).unpack()
    assert list(back) == sorted(forecasts)
    for t, mine in forecasts.items():
        theirs = back[t]
        assert (theirs.origin, theirs.step_seconds, theirs.model) == (mine.origin, mine.step_seconds, mine.model)
        np.testing.assert_array_equal(theirs.mean, mine.mean)
        assert list(theirs.quantiles) == list(mine.quantiles)
        for q, path in mine.quantiles.items():
            np.testing.assert_array_equal(theirs.quantiles[q], path)
    copy = pickle.loads(pickle.dumps(made.copy()))
    assert [copy.at(t)[1] for t in range(sc.minutes)] == [made.at(t)[1] for t in range(sc.minutes)]
    shorter = {half: dataclasses.replace(forecasts[half], mean=forecasts[half].mean[:-1])}
    with pytest.raises(ValueError, match=f"minute {half}"):
        Packed.of({**{t: f for t, f in forecasts.items() if t < half}, **shorter})


class _Opaque:
    """A fitted model that is not a FittedModel: :func:`tape.segment_job` then updates and
    forecasts it minute by minute, the reference for its one-pass path."""

    def __init__(self, fitted: FittedModel) -> None:
        self.fitted = fitted
        self.name, self.skill, self.end = fitted.name, fitted.skill, fitted.end

    def update(self, new: Series) -> FittedModel:
        return self.fitted.update(new)

    def forecast(self, h: int) -> Forecast:
        return self.fitted.forecast(h)


@pytest.mark.parametrize("model", ["auto", "holt_winters", "mstl"])
@pytest.mark.parametrize(("start", "every"), [(4320, 1), (4321, 1), (4321, 2), (4325, 3)])
def test_a_segment_in_one_pass_is_the_minute_by_minute_one(model: str, start: int, every: int) -> None:
    """The tape's forecasts made in one pass of the filter equal, to the last bit, updating the
    fit and forecasting at each decision minute: means, every quantile path and origins, for a
    moving seasonal profile (Holt-Winters), a fixed one (MSTL) and the auto pick; a demoted fit
    leaves the same notes."""
    sc = synthetic(days=5)
    spec = dataclasses.replace(TAPE, every=every, history=4320)
    history = spec.fit_history(sc, start)
    fits = {"auto": lambda: fit_job(history, spec.fit_horizon_steps, spec.seasons),
            "holt_winters": lambda: HoltWintersDamped().fit(history, horizon_steps=10, quantiles=QUANTILES),
            "mstl": lambda: MSTLETS(seasons_seconds=(86400,)).fit(history, horizon_steps=10, quantiles=QUANTILES)}
    fitted = fits[model]()
    assert isinstance(fitted, FittedModel)
    stop = start + 360
    values = sc.history(sc.minutes).values
    seen = Series(sc.start + start * 60, 60, values[start:stop - 1])
    minutes = [t for t in range(start, stop) if t % every == 0]
    for fit in (fitted, dataclasses.replace(fitted, skill=5.0)):  # the second is demoted
        fast = tape.segment_job(spec, start, stop, seen=seen, fitted=fit)
        slow = tape.segment_job(spec, start, stop, seen=seen, fitted=_Opaque(fit))  # type: ignore[arg-type]
        assert fast.notes == slow.notes
        a, b = fast.packed, slow.packed
        np.testing.assert_array_equal(a.minutes, b.minutes)
        np.testing.assert_array_equal(a.origins, b.origins)
        np.testing.assert_array_equal(a.paths, b.paths)
        assert (a.levels, a.names, a.step_seconds) == (b.levels, b.names, b.step_seconds)
        np.testing.assert_array_equal(a.model, b.model)
        if fit.skill == 5.0:
            assert sorted(fast.notes) == minutes and len(a.minutes) == 0
        else:
            assert not fast.notes and list(a.minutes) == minutes


def test_the_hindsight_sweep_shares_its_runs_once_the_tape_is_complete() -> None:
    """Once the tape is complete, a worker with a copy of it takes knobs from the same queue as
    this process: the same runs as here, in the knobs' order."""
    sc = synthetic(days=3)
    knobs = ((0.5, 1.0), (0.9, 1.0), (0.9, 1.3), (0.99, 1.0), (0.99, 1.5))
    spec = dataclasses.replace(SPEC, predictive_knobs=knobs, jobs=2)
    tape.clear_cache()
    made = build_tape(sc, spec).complete()
    here = run_sweep("predictive", sc, spec, made)
    ticks: list[int] = []
    with ticks_from_workers(ticks.append) as from_workers, worker_pool(1) as aside:
        shared = shared_sweep(sc, spec, made, aside, progress=ticks.append, ticks=from_workers)
    assert shared.points == here.points
    for mine, theirs in zip(here.runs, shared.runs, strict=True):
        np.testing.assert_array_equal(theirs.billed, mine.billed)
        np.testing.assert_array_equal(theirs.late, mine.late)
    assert ticks == [1] * 5  # a tick a run, the worker's two included
