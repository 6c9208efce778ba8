"""benchmarks/margin_family.py: fixed margins through the backtest, and its replay models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scaler.backtest.auto import auto_model
from scaler.backtest.pareto import Point
from scaler.backtest.sim import simulate
from scaler.backtest.sweep import run_backtest
from scaler.core.slo import Margin
from tests.backtest.support import load_benchmark
from tests.backtest.test_backtest_lookahead import KS, SPEC, build, raw_trace

family = load_benchmark("margin_family")
STEP = 60.0


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


def test_the_family_on_demand_alone_is_each_margin_once_more_without_the_forecast() -> None:
    world = type("World", (), {"capacity": 10.0})()
    both = family.family(SPEC, world, [1.2, 1.5], [0.0], [0.5], on_demand=(False, True))
    ahead = family.family(SPEC, world, [1.2, 1.5], [0.0], [0.5])
    assert both[:len(ahead)] == ahead and all(m.forecast for m in ahead)
    alone = both[len(ahead):]
    assert alone == [dataclasses.replace(m, forecast=False) for m in ahead]
    assert [family.label(m, 10.0) for m in (ahead[0], alone[0])] == [
        "x1.2 spread 0.5 hold 6m", "x1.2 spread 0.5 hold 6m on demand"]


@pytest.mark.parametrize("argv, named", [
    (["--trace", "x.csv", "--on", "past"], "--on"),
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
