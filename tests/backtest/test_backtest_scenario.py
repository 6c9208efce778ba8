"""What a replay is built from: gaps hidden from the policies, filled from the past for the world,
and fits that see the last ``history`` minutes like ``serve``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forecasting.fitted import FittedForecaster
from forecasting.traces import read_trace, synthetic_trace
from forecasting.types import Series
from scaler.backtest import tape
from scaler.backtest.scenario import fill_from_past, last_span, scenario_from_series
from scaler.backtest.sweep import MAX_FITS, REFIT_INTERVALS, BacktestSpec, refit_every, tape_spec
from scaler.backtest.tape import ForecastTape, TapeSpec
from tests.backtest.support import T0, scenario, synthetic

SERVEGEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "servegen"


def test_fill_takes_yesterday_scaled_to_the_hour_before() -> None:
    # Hourly steps: a day is 24 steps, the hour before a run is one step.
    yesterday = np.arange(24, dtype=float) + 10.0
    values = np.concatenate([yesterday, 2 * yesterday])
    unseen = np.zeros(48, dtype=bool)
    unseen[30:33] = True
    out, filled = fill_from_past(values, unseen, step_seconds=3600)
    assert filled == 3
    # level before the run: 2 x 15 = 30; the same hour yesterday: 15 -> x2 of yesterday's 16..18
    np.testing.assert_allclose(out[30:33], 2 * yesterday[6:9])
    np.testing.assert_array_equal(out[~unseen], values[~unseen])


def test_fill_uses_only_what_came_before() -> None:
    values = np.array([100.0] * 10 + [0.0] * 5 + [900.0] * 5)
    unseen = np.zeros(20, dtype=bool)
    unseen[10:15] = True
    out, _ = fill_from_past(values, unseen, step_seconds=600)  # no day before: the last hour's level
    np.testing.assert_array_equal(out[10:15], [100.0] * 5)
    later = values.copy()
    later[15:] = 0.0
    np.testing.assert_array_equal(fill_from_past(later, unseen, step_seconds=600)[0][:15], out[:15])


def test_missing_rows_before_any_data_replay_as_zero() -> None:
    values = np.array([np.nan, np.nan, 5.0, 6.0])
    out, filled = fill_from_past(values, ~np.isfinite(values), step_seconds=600)
    assert out.tolist() == [0.0, 0.0, 5.0, 6.0] and filled == 0


def _with_gap() -> Series:
    values = np.full(3 * 144, 6000.0)  # 10-minute buckets: 600 requests a minute
    values[300:303] = 0.0
    values[350] = np.nan
    return Series(T0, 600, values)


def test_gaps_are_missing_data_to_policies_and_traffic_to_the_world() -> None:
    sc = scenario_from_series(_with_gap(), name="t", warmup_seconds=86400, capacity=100.0)
    gap, row = slice(3000, 3030), slice(3500, 3510)
    assert not sc.observed[gap].any() and not sc.observed[row].any()
    assert sc.observed[:3000].all() and sc.observed[3030:3500].all()
    assert np.isnan(sc.history(3600).values[gap]).all()
    np.testing.assert_allclose(sc.arrivals[gap], 600.0)  # filled for the world
    assert sc.filled_buckets == 4


def test_keep_gaps_replays_zeros_the_scaler_sees() -> None:
    sc = scenario_from_series(_with_gap(), name="t", warmup_seconds=86400, capacity=100.0,
                              fill=False)
    assert sc.observed[3000:3030].all() and not sc.observed[3500:3510].any()
    assert sc.arrivals[3000:3030].tolist() == [0.0] * 30
    assert sc.filled_buckets == 0


def test_history_window_has_the_right_start() -> None:
    sc = synthetic(days=1, warmup_days=0.5)
    window = sc.history(900, start=300)
    assert window.start == sc.start + 300 * 60 and len(window) == 600
    np.testing.assert_array_equal(window.values, sc.history(900).values[300:])


def test_fits_see_at_most_the_history_window(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = synthetic(days=2, warmup_days=1.0)
    seen: list[tuple[float, int]] = []
    real = tape.fit_job

    def recording(history: Series, horizon_steps: int, seasons: tuple[int, ...]) -> FittedForecaster:
        seen.append((history.start, len(history)))
        return real(history, horizon_steps, seasons)

    monkeypatch.setattr(tape, "fit_job", recording)
    tape.clear_cache()
    spec = TapeSpec(horizon_seconds=600, fit_horizon_steps=10, refit_every=360, first_fit=720,
                    history=1000)
    fits = ForecastTape(sc, spec).complete().fits
    assert sorted(fits) == spec.fit_minutes(sc.minutes)
    for (start, n), (t, fitted) in zip(seen, sorted(fits.items()), strict=True):
        assert n == min(t, 1000) and start == sc.start + (t - n) * 60
        assert fitted.end == sc.start + t * 60  # the forecast origin is the fit minute


@pytest.mark.skipif(not SERVEGEN.is_dir(), reason=f"real traces not found at {SERVEGEN}")
@pytest.mark.parametrize(("trace", "filled"), [("m-small", 37), ("m-mid", 102), ("m-large", 0)])
def test_servegen_gaps_are_found_from_the_past(trace: str, filled: int) -> None:
    series = read_trace(SERVEGEN / f"{trace}_10min.csv").series
    sc = scenario_from_series(series, name=trace, warmup_seconds=7 * 86400)
    assert sc.filled_buckets == filled
    assert int((~sc.observed).sum()) == 10 * filled


@pytest.mark.parametrize(("days", "hours"), [(14, 6), (120, 6), (121, 8), (160, 8), (161, 12), (240, 12),
                                             (241, 24), (480, 24), (481, 48), (1000, 72)])
def test_the_default_refit_interval_keeps_a_long_trace_to_its_fit_budget(days: int, hours: int) -> None:
    every = refit_every(days * 86400.0)
    assert every == hours * 3600.0
    assert days * 86400.0 / every <= MAX_FITS  # the budget holds at every length
    # ... and no shorter interval of the ladder would have kept to it.
    assert all(days * 86400.0 / shorter > MAX_FITS for shorter in REFIT_INTERVALS if shorter < every)


def test_the_fit_schedule_uses_the_interval_given_or_the_default() -> None:
    series = synthetic_trace(days=130, step_seconds=1800, seed=1).series
    sc = scenario_from_series(series, name="long", warmup_seconds=7 * 86400.0)
    default = tape_spec(sc, BacktestSpec())
    assert default.refit_every == 8 * 60  # 130 days: 6 h would be 520 fits
    assert len(default.fit_minutes(sc.minutes)) <= MAX_FITS
    assert tape_spec(sc, BacktestSpec(refit_every_s=3600.0)).refit_every == 60


def test_a_long_trace_is_replayed_from_a_run_in_before_its_last_span() -> None:
    sc = scenario(np.arange(1000.0), warmup=100, observed=np.arange(1000) % 7 != 0)
    cut = last_span(sc, 200, 300)
    # scored: the last 200 minutes; replayed from 300 before them; the rest skipped
    assert (cut.minutes, cut.warmup_minutes, cut.skipped_minutes) == (500, 300, 500)
    assert cut.start == sc.start + 500 * 60 and cut.capacity == sc.capacity
    np.testing.assert_array_equal(cut.arrivals, sc.arrivals[500:])
    np.testing.assert_array_equal(cut.observed, sc.observed[500:])
    assert cut.key != sc.key
    # a warmup longer than the run-in is kept whole
    assert last_span(sc, 200, 50).warmup_minutes == 100


@pytest.mark.parametrize(("span", "run_in"), [(None, 300), (900, 0), (950, 0), (800, 200), (700, 300)])
def test_a_span_that_skips_nothing_keeps_the_scenario(span: int | None, run_in: int) -> None:
    sc = scenario(np.ones(1000), warmup=100)
    assert last_span(sc, span, run_in) is sc
