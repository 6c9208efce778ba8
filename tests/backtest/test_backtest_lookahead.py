"""No look-ahead: changing the raw trace from minute k on cannot change any decision up to minute k.

The trace is changed *before* the scenario is built, so gap detection and gap filling are part
of what is tested: a fill that interpolated towards the first sample after a gap, or a gap rule
that looked at the whole trace's median, would let minute k's data change the past.

Run for every policy, with the predictive policy's real fits (``fit_auto``) and updates: the
decision at minute k sees minutes < k only, so replicas (and billing) up to and including minute k
must be identical, and so must every forecast made up to minute k.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from forecasting.traces import synthetic_trace
from forecasting.types import Series
from scaler.backtest.scenario import Scenario, scenario_from_series
from scaler.backtest.sim import ClusterSpec, ControlSpec
from scaler.backtest.sweep import Backtest, BacktestSpec, run_backtest, tape_spec
from scaler.backtest.tape import QUANTILES

SPEC = BacktestSpec(
    cluster=ClusterSpec(cold_start_s=(600.0, 600.0)),
    control=ControlSpec(max_replicas=30),
    peak_replicas=10, refit_every_s=6 * 3600, predictive_knobs=((0.9, 1.0), (0.5, 1.3)),
)
Change = Callable[[np.ndarray], np.ndarray]
CHANGES: dict[str, Change] = {
    "x3": lambda future: future * 3.0,
    "x0": lambda future: future * 0.0,
    "missing": lambda future: np.full_like(future, np.nan),
}


def raw_trace(k: int) -> Series:
    """3 days at 1-minute steps with collection gaps and missing rows shortly before minute k.

    The gap that ends exactly at k is the one an interpolating fill reaches across (its
    far end is minute k); the earlier ones are what a whole-trace gap rule could un-find.
    """
    values = synthetic_trace(days=3, step_seconds=60, seed=1, peak_per_minute=200.0).series.values
    values = np.array(values)
    values[k - 300 : k - 280] = 0.0
    values[k - 200 : k - 190] = np.nan
    values[k - 15 : k] = 0.0
    return Series(0.0, 60, values)


def build(series: Series) -> Scenario:
    # A fixed capacity: the peak-normalised default is a setting taken from the whole trace.
    return scenario_from_series(series, name="synthetic", warmup_seconds=2 * 86400,
                                peak_replicas=10, capacity=20.0)


def changed(series: Series, k: int, change: Change) -> Series:
    values = np.array(series.values)
    values[k:] = change(values[k:])
    return Series(series.start, series.step_seconds, values)


def decisions_match(a: Backtest, b: Backtest, k: int) -> None:
    for name, sweep in a.sweeps.items():
        for p, run_a, run_b in zip(sweep.points, sweep.runs, b.sweeps[name].runs, strict=True):
            assert run_a.replicas[: k + 1].tolist() == run_b.replicas[: k + 1].tolist(), (name, p.label)
            assert run_a.billed[: k + 1].tolist() == run_b.billed[: k + 1].tolist(), (name, p.label)


def forecasts_match(a: Backtest, b: Backtest, first: int, k: int) -> None:
    assert a.tape is not None and b.tape is not None
    for t in range(first, k + 1):
        (mine, note_a), (theirs, note_b) = a.tape.at(t), b.tape.at(t)
        assert note_a == note_b, t
        assert (mine is None) == (theirs is None), t
        if mine is not None and theirs is not None:
            np.testing.assert_array_equal(mine.mean, theirs.mean)
            for q in QUANTILES:
                np.testing.assert_array_equal(mine.quantile(q), theirs.quantile(q))


def what_policies_see_matches(a: Scenario, b: Scenario, k: int) -> None:
    """The world and the metrics before k: arrivals, observed, the forecaster's history."""
    np.testing.assert_array_equal(a.arrivals[:k], b.arrivals[:k])
    np.testing.assert_array_equal(a.observed[:k], b.observed[:k])
    np.testing.assert_array_equal(a.history(k).values, b.history(k).values)


def fit_minutes() -> list[int]:
    return tape_spec(build(raw_trace(3000)), SPEC).fit_minutes(3 * 1440)


# Right at a refit, just after one, and mid-interval.
KS = {"at-refit": fit_minutes()[2], "after-refit": fit_minutes()[2] + 1,
      "mid-interval": fit_minutes()[3] + 170}


@pytest.mark.slow
@pytest.mark.parametrize("where", list(KS))
def test_the_future_cannot_change_past_decisions(where: str) -> None:
    k = KS[where]
    raw = raw_trace(k)
    base = build(raw)
    assert not base.observed[k - 15 : k].any()  # the gaps are found and hidden from policies
    reference = run_backtest(base, SPEC)
    for how, change in CHANGES.items():
        scenario = build(changed(raw, k, change))
        what_policies_see_matches(base, scenario, k)
        other = run_backtest(scenario, SPEC)
        decisions_match(reference, other, k)
        forecasts_match(reference, other, fit_minutes()[0], k)
        # ...and the future did change what came after.
        assert any(
            run_a.replicas[k + 1 :].tolist() != run_b.replicas[k + 1 :].tolist()
            for name, s in reference.sweeps.items()
            for run_a, run_b in zip(s.runs, other.sweeps[name].runs, strict=True)), how
