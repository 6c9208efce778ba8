"""The policies compared (docs/BACKTEST.md, "Policies compared"), each as a KEDA metric per poll.

All of them see only :class:`~scaler.backtest.sim.View` (minutes before now) and go through the
same HPA rules in :mod:`scaler.backtest.sim`. Units: requests per minute; ``c`` = one replica's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from forecasting.types import Forecast
from scaler.backtest.sim import Metric, View
from scaler.core.coldstart import lead_seconds as core_lead_seconds
from scaler.core.config import ModelSettings
from scaler.core.decision import DecisionInputs, DecisionState, decide
from scaler.core.model import ColdStart


@dataclass
class ReactiveUtil:
    """HPA on concurrency: desired = ceil(load / u), load = (a(t-1) + q(t-1)) / c replicas.

    E.g. c = 100, a(t-1) = 450, q(t-1) = 50, u = 0.8: load 5 -> ceil(6.25) = 7 replicas.
    """

    capacity: float
    utilization: float

    def metric(self, view: View) -> Metric:
        load = (view.arrivals_prev + view.queue_prev) / self.capacity
        return Metric(load, self.utilization, active=load > 0)


@dataclass
class ReactiveQueue:
    """KEDA Prometheus trigger on ``vllm:num_requests_waiting`` (production-stack default).

    desired = ceil(waiting / threshold), waiting = q(t-1) in requests, and never fewer than the
    current replicas while anything waits. On traffic of thousands of requests per replica-minute
    any backlog asks for the maximum: the trigger is bang-bang there, as it is in production.
    """

    threshold: float

    def metric(self, view: View) -> Metric:
        waiting = view.queue_prev
        return Metric(waiting, self.threshold, active=waiting > 0, hold_current=waiting > 0)


@dataclass
class Static:
    """A fixed count (the over-provisioning users fall back to)."""

    replicas: int

    def metric(self, view: View) -> Metric:
        return Metric(float(self.replicas), 1.0, active=self.replicas > 0)


class ForecastSource(Protocol):
    """The forecasts the scaler would have had at each decision minute (see :mod:`.tape`)."""

    def at(self, t: int) -> tuple[Forecast | None, str]:
        """Forecast made at minute ``t`` from minutes < ``t``, or None and why."""
        ...


@dataclass
class Predictive:
    """prewarm itself: ``scaler.core.decision.decide`` on the same inputs ``serve`` builds.

    demand = a(t-1) + q(t-1) requests per minute (the fluid model's running + waiting: the last
    minute's work plus the backlog), capacityPerReplica = c, forecast = ``fit_auto`` fitted on
    the past, refitted on a schedule and ``update``-d in between, lead = cold start p90 + node
    provisioning + polling interval. GetMetrics answers ``decision.replicas`` with target 1; an
    invalid decision (no data past staleAfter) fails GetMetrics, so the HPA keeps the count.
    """

    model: ModelSettings
    forecasts: ForecastSource
    lead_seconds: float
    node_lead_seconds: float = 0.0
    state: DecisionState = field(default_factory=DecisionState)

    def metric(self, view: View) -> Metric:
        demand = view.arrivals_prev + view.queue_prev if view.observed_prev else None
        forecast, note = self.forecasts.at(view.t)
        inputs = DecisionInputs(demand=demand, forecast=forecast, lead_seconds=self.lead_seconds,
                                forecast_note=note, node_lead_seconds=self.node_lead_seconds)
        decision, self.state = decide(inputs, self.model, self.state, now=view.now)
        if not decision.valid:
            return Metric(float(view.replicas), 1.0, active=view.replicas > 0)
        return Metric(float(decision.replicas), 1.0, active=decision.active,
                      prewarm=decision.prewarm_replicas)


def lead_seconds(cold_start_p90_s: float, node_provision_s: float, polling_s: float) -> float:
    """The engine's lead (``scaler.core.coldstart.lead_seconds``), node provisioning counted."""
    cold = ColdStart(pod_startup_seconds=cold_start_p90_s, node_provisioning_seconds=node_provision_s)
    return core_lead_seconds(cold, pool_has_spare=None, decision_delay_seconds=polling_s)
