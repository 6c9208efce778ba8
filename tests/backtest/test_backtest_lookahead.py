"""No look-ahead: changing the trace from minute k on cannot change any decision up to minute k.

Run for every policy, with the predictive policy's real fits (``fit_auto``) and updates: the
decision at minute k sees minutes < k only, so replicas (and billing) up to and including minute k
must be identical, and so must every forecast made up to minute k.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from scaler.backtest.scenario import Scenario
from scaler.backtest.sim import ClusterSpec, ControlSpec
from scaler.backtest.sweep import Backtest, BacktestSpec, run_backtest, tape_spec
from tests.backtest.support import synthetic

SPEC = BacktestSpec(
    cluster=ClusterSpec(cold_start_s=(600.0, 600.0)),
    control=ControlSpec(max_replicas=30),
    peak_replicas=10, refit_every_s=6 * 3600, predictive_knobs=((0.9, 1.0), (0.5, 1.3)),
)


def altered(base: Scenario, k: int, seed: int) -> Scenario:
    """The same trace up to minute k, a very different future (bursts, drops, a silent gap)."""
    rng = np.random.default_rng(seed)
    arrivals = np.array(base.arrivals)
    arrivals[k:] = arrivals[k:] * rng.uniform(0.0, 3.0, base.minutes - k)
    arrivals[k + 30 : k + 90] = 0.0
    observed = np.array(base.observed)
    observed[k + 100 : k + 110] = False
    return replace(base, arrivals=arrivals, observed=observed, key="")


def decisions_match(a: Backtest, b: Backtest, k: int) -> None:
    for name, sweep in a.sweeps.items():
        for p, run_a, run_b in zip(sweep.points, sweep.runs, b.sweeps[name].runs, strict=True):
            assert run_a.replicas[: k + 1].tolist() == run_b.replicas[: k + 1].tolist(), (name, p.label)
            assert run_a.billed[: k + 1].tolist() == run_b.billed[: k + 1].tolist(), (name, p.label)


@pytest.mark.slow
def test_the_future_cannot_change_past_decisions() -> None:
    base = synthetic(days=3, warmup_days=2.0, capacity=20.0)  # fixed c: no peak normalisation
    reference = run_backtest(base, SPEC)
    assert reference.tape is not None
    fit_minutes = tape_spec(base, SPEC).fit_minutes(base.minutes)
    # Right at a refit, just after one, and mid-interval.
    for k in (fit_minutes[2], fit_minutes[2] + 1, fit_minutes[3] + 170):
        other = run_backtest(altered(base, k, seed=k), SPEC)
        assert other.tape is not None
        decisions_match(reference, other, k)
        for t in range(fit_minutes[0], k + 1):
            mine, theirs = reference.tape.at(t)[0], other.tape.at(t)[0]
            assert mine is not None and theirs is not None
            np.testing.assert_array_equal(mine.quantile(0.9), theirs.quantile(0.9))
        # ...and the future did change what came after.
        assert any(
            run_a.replicas[k + 1 :].tolist() != run_b.replicas[k + 1 :].tolist()
            for name, s in reference.sweeps.items()
            for run_a, run_b in zip(s.runs, other.sweeps[name].runs, strict=True))
