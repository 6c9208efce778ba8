"""``prewarm backtest``: closed-loop replay of a request trace against every scaling policy.

Implements docs/BACKTEST.md: a fluid FIFO cluster at 1-minute steps
(:mod:`.sim`), the policies behind KEDA's HPA rules (:mod:`.policies`), the perfect-foresight
oracle (:mod:`.oracle`), knob sweeps and ``cost_at_slo`` (:mod:`.sweep`, :mod:`.pareto`), and the
table / JSON / plot (:mod:`.report`). The predictive policy is the project's own decision core
(``scaler.core.decision.decide``) fed with ``forecasting.fit_auto`` forecasts of the past only
(:mod:`.tape`).

Pure: numpy, ``scaler.core`` and ``forecasting``; no gRPC, Prometheus or Kubernetes here (the
``--prometheus`` flag imports its adapter lazily, in :mod:`.cli`).
"""

from scaler.backtest.oracle import oracle_billed
from scaler.backtest.pareto import Point, cost_at_slo, pareto_frontier
from scaler.backtest.scenario import Scenario, scenario_from_series
from scaler.backtest.sim import ClusterSpec, ControlSpec, RunResult, simulate
from scaler.backtest.sweep import BacktestSpec, run_backtest

__all__ = [
    "BacktestSpec",
    "ClusterSpec",
    "ControlSpec",
    "Point",
    "RunResult",
    "Scenario",
    "cost_at_slo",
    "oracle_billed",
    "pareto_frontier",
    "run_backtest",
    "scenario_from_series",
    "simulate",
]
