"""What limits the predictive policy: the same decision pipeline fed with forecasts nobody has.

Replaces the ``fit_auto`` forecast tape by "ideal" forecasts built from the FUTURE of the trace -
the exact demand, or its centred moving average over W minutes (which knows the level and the
daily shape but not the bursts shorter than W) - and runs the predictive sweep through the very
same ``decide`` + HPA + fluid cluster. The gap between these rows and the real forecaster says
how much a better forecaster could buy; the W = 61 row says what knowing the hourly level exactly
would cost on bursty traffic. Not a test; figures recorded in docs/BACKTEST.md::

    .venv/bin/python benchmarks/backtest_bounds.py --trace m-small --cold-start 30m
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from forecasting.traces import read_trace
from forecasting.types import Forecast
from scaler.backtest.cli import cold_start_range, duration
from scaler.backtest.oracle import oracle_billed, oracle_cold_minutes
from scaler.backtest.scenario import MINUTE, Scenario, scenario_from_series
from scaler.backtest.sim import ClusterSpec
from scaler.backtest.sweep import BacktestSpec, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SPREAD = {0.5: 0.0, 0.8: 0.05, 0.9: 0.10, 0.95: 0.15, 0.99: 0.25}
"""Quantile paths of the ideal forecast: mean x (1 + spread)."""


class IdealForecasts:
    """Forecasts that know the future: the centred W-minute mean of demand (W = 1: exact)."""

    def __init__(self, scenario: Scenario, *, window: int, horizon_s: float) -> None:
        kernel = np.ones(window) / window
        self.mean = np.convolve(scenario.arrivals, kernel, mode="same")
        self.start = scenario.start
        self.h = math.ceil(horizon_s / MINUTE) + 1

    def at(self, t: int) -> tuple[Forecast | None, str]:
        mean = self.mean[t : t + self.h]
        if mean.shape[0] < self.h:
            mean = np.concatenate([mean, np.full(self.h - mean.shape[0], mean[-1] if mean.size else 0.0)])
        paths = {q: mean * (1 + s) for q, s in SPREAD.items()}
        return Forecast(self.start + t * MINUTE, MINUTE, mean, paths, "ideal"), ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", default="m-small")
    parser.add_argument("--cold-start", default="30m")
    parser.add_argument("--windows", default="1,31,61,121", help="centred averaging windows, minutes")
    args = parser.parse_args()
    path = ROOT.parent / "shared" / "data" / "servegen" / f"{args.trace}_10min.csv"
    scenario = scenario_from_series(read_trace(path).series, name=args.trace,
                                    warmup_seconds=duration("7d", "--warmup"))
    spec = BacktestSpec(cluster=ClusterSpec(cold_start_s=cold_start_range(args.cold_start)))
    oracle = float(oracle_billed(
        scenario.demand, min_replicas=1,
        cold_start_minutes=oracle_cold_minutes(spec.cluster.cold_start_s, 0.0))[scenario.window].sum()) / 60
    print(f"{args.trace}, cold start {args.cold_start}: oracle {oracle:.1f} GPU-hours\n")
    print("| forecast fed to decide() | cost_at_slo(0.99) | x oracle |\n|---|---|---|")
    for window in (int(w) for w in args.windows.split(",")):
        ideal = IdealForecasts(scenario, window=window, horizon_s=spec.lead_s)
        sweep = run_sweep("predictive", scenario, spec, ideal)
        cost = sweep.cost_at(0.99)
        label = "exact future demand" if window == 1 else f"future {window}-min centred mean"
        ratio = "-" if cost is None else f"{cost / oracle:.3f}"
        print(f"| {label} | {'-' if cost is None else f'{cost:.1f}'} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
