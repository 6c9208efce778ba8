"""benchmarks/margin_family.py: fixed margins through the backtest, and its replay models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scaler.backtest.auto import auto_model
from scaler.backtest.pareto import Point
from scaler.backtest.sim import simulate
from scaler.backtest.sweep import run_backtest
from scaler.core.slo import Margin, ReplaySpec, replayed_share
from tests.backtest.support import load_benchmark
from tests.backtest.test_backtest_lookahead import KS, SPEC, build, raw_trace
from tests.unit.test_slo import demand_trace

family = load_benchmark("margin_family")
STEP = 60.0


@pytest.mark.parametrize("factor", [1.0, 1.2, 1.5])
def test_answering_the_backlog_and_the_hpa_window_only_add_replicas(factor: float) -> None:
    demand = demand_trace(8, cv=0.5, seed=4)
    base = np.concatenate([[np.nan], demand[:-1]])
    spec = ReplaySpec.for_lead(10 * 60 + 30, step_seconds=STEP, capacity=10.0)
    margin = Margin(factor, hold_seconds=6 * 60)
    open_loop = replayed_share(demand, base, spec, margin, step_seconds=STEP)
    closed = family.closed_loop_share(demand, base, margin, cold_steps=spec.cold_steps, hpa_steps=1,
                                      capacity=10.0)
    both = family.closed_loop_share(demand, base, margin, cold_steps=spec.cold_steps, hpa_steps=5,
                                    capacity=10.0)
    assert open_loop is not None
    # More replicas at every step can only serve more on time; a lean margin gains the most.
    assert open_loop <= closed + 1e-9 <= both + 2e-9 <= 1.0 + 2e-9
    if factor == 1.0:
        assert closed > open_loop


def test_with_no_backlog_the_closed_loop_is_the_tuners_replay() -> None:
    demand = demand_trace(8, cv=0.1, seed=5)
    base = np.concatenate([[np.nan], demand[:-1]])
    spec = ReplaySpec.for_lead(10 * 60 + 30, step_seconds=STEP, capacity=10.0)
    margin = Margin(3.0, hold_seconds=6 * 60)
    assert replayed_share(demand, base, spec, margin, step_seconds=STEP) == 1.0
    assert family.closed_loop_share(demand, base, margin, cold_steps=spec.cold_steps, hpa_steps=1,
                                    capacity=10.0) == 1.0


@pytest.mark.slow
def test_a_pinned_margin_is_the_one_every_decision_uses() -> None:
    scenario = build(raw_trace(KS["mid-interval"]))
    spec = dataclasses.replace(SPEC, slo=0.99, policies=("static",))
    bt = run_backtest(scenario, spec)
    assert bt.tape is not None
    model = auto_model(scenario, slo=0.99, cluster=spec.cluster, control=spec.control,
                              seasons_s=spec.seasons_s)
    pinned = family.Pinned(model, bt.tape, spec.lead_s, spec.cluster.node_provision_s, scenario.minutes)
    pinned.pinned = Margin(1.7, hold_seconds=600.0)
    simulate(scenario, pinned, spec.cluster, spec.control)
    used = pinned.margin[np.isfinite(pinned.margin)]
    assert used.size > 0.9 * scenario.minutes
    assert np.allclose(used, 1.7)  # the margin as a number: provisioned / expected demand
    assert pinned.tuner.margin == pinned.pinned

    family._WORLD.update(scenario=scenario, spec=spec, tape=bt.tape, model=model)
    row = family.run_margin(Margin(1.7, hold_seconds=600.0))
    assert 0.0 < row.slo_attainment <= 1.0 and row.gpu_hours > 0
    assert set(row.week_replayed) == set(family.REPLAYS)
    assert 0.0 < row.warmup_attainment <= 1.0 and row.warmup_gpu_hours > 0


def test_warmup_choice_is_the_cheapest_margin_reaching_the_aim_on_the_warmup() -> None:
    def row(factor: float, warmup: float, warmup_gpu: float, scored: float, gpu: float) -> family.Row:
        return family.Row(Margin(factor), scored, gpu, scored, {}, warmup, warmup_gpu)

    rows = [row(1.2, 0.991, 100.0, 0.97, 110.0), row(1.5, 0.996, 120.0, 0.993, 130.0),
            row(2.0, 0.999, 150.0, 0.998, 160.0)]
    static = [Point(0, 0.99, 120.0), Point(1, 0.999, 200.0)]
    chosen = {c["aim"]: c for c in family.warmup_choices(rows, {"family": [], "static": static}, 1.0)}
    assert chosen[0.99]["label"].startswith("x1.2") and chosen[0.995]["label"].startswith("x1.5")
    assert chosen[0.998]["slo_attainment"] == 0.998
    # 1.5 scored 0.993: static's hindsight cost there is 120 + (200 - 120) / 3 = 146.7
    assert chosen[0.995]["vs_best_baseline"] == pytest.approx(130.0 / (120.0 + 80.0 / 3))
    assert chosen[0.99]["vs_best_baseline"] == pytest.approx(110.0 / 120.0)  # the frontier's first point
    assert family.warmup_choices(rows[:1], {"static": static}, 1.0)[0]["aim"] == 0.99  # none reach 0.995


@pytest.mark.parametrize("argv, named", [
    (["--trace", "x.csv", "--factors", "1.2,-1"], "--factors"),
    (["--trace", "x.csv", "--spreads", "a"], "--spreads"),
    (["--trace", "x.csv", "--jobs", "0"], "--jobs"),
    (["--trace", "does-not-exist.csv"], "does-not-exist.csv"),
    (["--trace", "x.csv", "--cold-start", "soon"], "--cold-start"),
])
def test_bad_flags_are_usage_errors_naming_the_flag(argv: list[str], named: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        family.main(argv)
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err
