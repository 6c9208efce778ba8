"""The backtest without hindsight: the self-tuned policy, configured with an SLO only, in one run.

docs/BACKTEST.md, "Without hindsight": the predictive policy is given ``slo.onTime`` and nothing else
(no quantile, no headroom), runs ONCE over the trace, and tunes its own margin online with
``scaler.core.slo`` - the code ``prewarm serve`` runs - from what it has seen: the demand of past
minutes, the base its decisions had, and the late share, fed to it as late as serve would see it
(vLLM counts a request in ``request_queue_time_seconds`` when it finishes; here a minute after).
Its figures are set beside every baseline's hindsight frontier at the attainment it reached, and
beside the baselines a user would have tuned on the warmup.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from forecasting.traces import format_timestamp
from scaler.backtest.misses import Episode, late_episodes
from scaler.backtest.pareto import Point, cost_at_slo
from scaler.backtest.policies import ForecastSource
from scaler.backtest.scenario import MINUTE, Scenario
from scaler.backtest.sim import (
    ClusterSpec,
    ControlSpec,
    FloatArray,
    Metric,
    RunResult,
    View,
    on_time_share,
    simulate,
)
from scaler.core.config import ModelSettings, parse_settings
from scaler.core.decision import DecisionInputs, DecisionState, decide
from scaler.core.excursion import Running
from scaler.core.slo import HPA_WINDOW_SECONDS, Margin, ReplaySpec, TunerState, describe, retune

BASELINES = ("reactive-util", "reactive-queue", "static")
FEEDBACK_DELAY_MINUTES = 1
"""Late requests reach the tuner this much after their minute (serve: when they finish)."""


def auto_model(scenario: Scenario, *, slo: float, cluster: ClusterSpec, control: ControlSpec,
               seasons_s: tuple[int, ...]) -> ModelSettings:
    """What a user writes for the auto policy: the SLO, the capacity, the bounds - no quantile,
    no stabilization (the tuner chooses it; ``--stabilization`` is the quantile sweep's)."""
    raw = {
        "replay": {},
        "defaults": {"pollingInterval": control.polling_s, "step": "1m"},
        "models": [{
            "name": "backtest", "capacityPerReplica": scenario.capacity,
            "minReplicas": control.min_replicas, "maxReplicas": control.max_replicas,
            "demand": "arrivals", "slo": {"onTime": slo, "window": "1h"},
            "coldStart": {"initial": cluster.cold_start_p90_s, "learn": False,
                          "nodeProvisioning": cluster.node_provision_s},
            "seasonality": list(seasons_s),
        }],
    }
    return parse_settings(raw, source="backtest").settings.models[0]


@dataclass(frozen=True)
class TunerStep:
    """One hourly step of the tuner in a replay: what it was fed and what it holds after."""

    at: float
    on_time: float | None
    """The measured share fed to it (None: nothing finished, or no reading)."""
    requests: float | None
    margin: Margin
    """The margin held after the step."""
    budget: str
    """The trailing week's error budget (:attr:`TunerState.budget`)."""
    chosen: bool
    """The margin was chosen at this step (it may be the same as before)."""


@dataclass
class SelfTuned:
    """prewarm with ``slo`` set: ``decide`` with the margin ``scaler.core.slo.retune`` keeps choosing.

    Per decision minute t it records what serve's engine records per step - the demand it saw
    (minute t-1) and the base of its decision - and the late share of the minutes up to
    t - 1 - :data:`FEEDBACK_DELAY_MINUTES`, the measurement serve reads from vLLM's histogram.
    """

    model: ModelSettings
    forecasts: ForecastSource
    lead_seconds: float
    node_lead_seconds: float
    minutes: int
    hpa_window_seconds: float = HPA_WINDOW_SECONDS
    """The simulated HPA's scale-down window (``--scale-down-window``): the tuner replays it."""
    progress: Callable[[int], None] | None = None
    """Called with 1 after each simulated day."""
    state: DecisionState = field(default_factory=DecisionState)
    tuner: TunerState = field(default_factory=TunerState)
    demand: FloatArray = field(init=False)
    base: FloatArray = field(init=False)
    desired: FloatArray = field(init=False)
    margin: FloatArray = field(init=False)
    arrivals: FloatArray = field(init=False)
    late: FloatArray = field(init=False)
    seen: FloatArray = field(init=False)
    """``demand`` with its missing minutes 0 (what the excursion reads)."""
    steps: list[TunerStep] = field(init=False)
    """Every hourly tuner step, in order (``--tuner-log``)."""

    def __post_init__(self) -> None:
        n = self.minutes
        self.demand, self.base, self.desired, self.margin = (np.full(n, np.nan) for _ in range(4))
        self.arrivals, self.late, self.seen = np.zeros(n), np.zeros(n), np.zeros(n)
        self.steps = []
        self.replay = ReplaySpec.for_lead(self.lead_seconds, step_seconds=MINUTE,
                                          capacity=self.model.capacityPerReplica,
                                          stabilization_seconds=self.model.policy.stabilization_seconds,
                                          hpa_window_seconds=self.hpa_window_seconds)
        self.excursion = Running(step_seconds=MINUTE, lead_steps=self.replay.cold_steps)

    def metric(self, view: View) -> Metric:
        t = view.t
        if self.progress is not None and t and t % 1440 == 0:
            self.progress(1)
        demand = view.arrivals_prev + view.queue_prev if view.observed_prev else None
        if t > 0:
            self.arrivals[t - 1], self.late[t - 1] = view.arrivals_prev, view.late_prev
            if view.observed_prev:
                # The tuner replays a rate: arrivals, not arrivals + backlog (a backlog is the
                # cost of past under-provisioning, and would count again in every replayed step).
                self.demand[t - 1] = self.seen[t - 1] = view.arrivals_prev
        slo = self.model.policy.slo
        assert slo is not None
        # Minutes before t - 1 - delay: the minute just completed and the delay are not seen yet.
        stop, window = t - 1 - FEEDBACK_DELAY_MINUTES, round(slo.window / MINUTE)
        on_time, requests = on_time_share(self.arrivals, self.late, stop=stop, window=window)
        before = self.tuner
        self.tuner = self.retune(view.now, t, target=slo.onTime, on_time=on_time, requests=requests)
        if self.tuner.tuned_at != before.tuned_at:
            tuner = self.tuner
            self.steps.append(TunerStep(view.now, on_time, requests, tuner.margin, tuner.budget,
                                        chosen=tuner.chosen_at == view.now))
        forecast, note = self.forecasts.at(t)
        inputs = DecisionInputs(demand=demand, forecast=forecast, lead_seconds=self.lead_seconds,
                                forecast_note=note, node_lead_seconds=self.node_lead_seconds,
                                margin=self.tuner.margin, on_time=on_time,
                                excursion=self.excursion.at(self.seen, t))
        decision, self.state = decide(inputs, self.model, self.state, now=view.now)
        peak = decision.forecast_peak if decision.forecast_peak is not None else 0.0
        self.base[t] = max(view.arrivals_prev, peak) if view.observed_prev else np.nan
        self.margin[t] = decision.margin if decision.margin is not None else np.nan
        if not decision.valid:
            self.desired[t] = view.replicas
            return Metric(float(view.replicas), 1.0, active=view.replicas > 0)
        self.desired[t] = decision.replicas
        return Metric(float(decision.replicas), 1.0, active=decision.active,
                      prewarm=decision.prewarm_replicas)

    def retune(self, now: float, t: int, *, target: float, on_time: float | None,
               requests: float | None) -> TunerState:
        """The tuner step serve's engine runs, on the minutes before ``t`` (a seam for
        ``benchmarks/margin_family.py``, which pins the margin instead)."""
        return retune(self.tuner, now=now, demand=self.demand[:t], base=self.base[:t],
                      spec=self.replay, target=target, on_time=on_time, step_seconds=MINUTE,
                      requests=requests)


@dataclass(frozen=True)
class TunedOnPast:
    """A baseline's knob picked on the warmup (after its first day), then scored on the window."""

    knob: float
    label: str
    reached: bool
    """The knob met the target on the warmup (else: the best the warmup saw)."""
    slo_attainment: float
    gpu_hours: float
    warmup_attainment: float
    """What it was picked on: its attainment and GPU-hours over the warmup after its first day."""
    warmup_gpu_hours: float


K = TypeVar("K")


def picked_on_past(tuned: Mapping[str, TunedOnPast], slo: float) -> str | None:
    """The baseline a user without prewarm would deploy, judging on the warmup alone: the one that
    met ``slo`` there for the fewest GPU-hours, or, where none met it, the one closest to it
    (fewer GPU-hours among equals). None without any. The rule :func:`tuned_on_past` picks each
    baseline's knob by (:func:`_cheapest_meeting`), across the baselines.

    E.g. static met it for 300 GPU-hours and reactive-util for 250: reactive-util; neither met
    it, static 0.985 and reactive-util 0.97: static."""
    if not tuned:
        return None
    return _cheapest_meeting([(t.warmup_attainment, t.warmup_gpu_hours, n) for n, t in tuned.items()], slo)[2]


def _cheapest_meeting(scored: Sequence[tuple[float, float, K]], slo: float) -> tuple[float, float, K]:
    """Of (attainment, GPU-hours, what) judged on the warmup: the cheapest reaching ``slo``, or,
    where none does, the highest attainment (fewer GPU-hours among equals)."""
    reaching = [s for s in scored if s[0] >= slo]
    return min(reaching, key=lambda s: s[1]) if reaching else max(scored, key=lambda s: (s[0], -s[1]))


@dataclass(frozen=True)
class AutoResult:
    """The self-tuned run and how it compares (docs/BACKTEST.md's ``auto`` block)."""

    slo: float
    slo_attainment: float
    gpu_hours: float
    vs_oracle: float
    vs_baselines: dict[str, float | None]
    best_baseline: str | None
    """The baseline that is cheapest at the attainment the auto policy reached."""
    best_baseline_ratio: float | None
    tuned_on_past: dict[str, TunedOnPast]
    run: RunResult
    controller: SelfTuned
    seconds: float
    """Wall time of the simulated run."""
    episodes: list[Episode]
    """The window's late minutes as episodes, most late requests first (:mod:`.misses`)."""

    @property
    def beaten_by(self) -> list[str]:
        """The baselines tuned on the warmup that did at least as well on time for fewer GPU-hours."""
        return beaten_by(self.gpu_hours, self.slo_attainment,
                         {n: (t.slo_attainment, t.gpu_hours) for n, t in self.tuned_on_past.items()})

    @property
    def picked_on_past(self) -> str | None:
        """The baseline tuned on the warmup that a user would have deployed (:func:`picked_on_past`)."""
        return picked_on_past(self.tuned_on_past, self.slo)


def versus(gpu_hours: float, attainment: float,
           frontiers: dict[str, list[Point]]) -> tuple[dict[str, float | None], str | None, float | None]:
    """GPU-hours / each baseline's hindsight cost at ``attainment``; the cheapest one and its ratio."""
    ratios: dict[str, float | None] = {}
    for name, points in frontiers.items():
        cost = cost_at_slo(points, attainment)
        ratios[name] = gpu_hours / cost if cost else None
    reached = {n: r for n, r in ratios.items() if r is not None}
    if not reached:
        return ratios, None, None
    best = max(reached, key=lambda n: reached[n])  # the cheapest baseline gives the largest ratio
    return ratios, best, reached[best]


def beaten_by(gpu_hours: float, attainment: float, rivals: Mapping[str, tuple[float, float]]) -> list[str]:
    """The rivals (name -> (attainment, GPU-hours) on the scored window) that reached at least
    ``attainment`` for fewer GPU-hours. Given the baselines tuned on the warmup, these are what a
    user without prewarm would have done as well with, for less.

    E.g. 0.995 on time for 100 GPU-hours: static (0.996, 90) beats it; (0.99, 50), (0.996, 120)
    and a tie, (0.995, 100), do not. A tie is not "cheaper than every one that reaches its
    attainment" either, which issue 10 asks of ServeGen (``benchmarks/slo_figures.py``)."""
    return [name for name, (att, gpu) in rivals.items() if att >= attainment and gpu < gpu_hours]


def warmup_past(scenario: Scenario) -> slice:
    """The minutes a user could judge a knob on: the warmup after its first day (the first day
    is every policy's start from cold)."""
    return slice(min(1440, scenario.warmup_minutes), scenario.warmup_minutes)


def tuned_on_past(points: list[Point], runs: list[RunResult], scenario: Scenario, *, slo: float,
                  gpus_per_replica: int) -> TunedOnPast | None:
    """The cheapest knob reaching ``slo`` over the warmup after its first day, scored on the window.

    None when the warmup is a day or shorter (nothing to tune on). If no knob reached ``slo`` on
    the warmup, the one that came closest (a user would pick the safest one seen).
    """
    past = warmup_past(scenario)
    if past.stop - past.start < 60:
        return None
    scored = [(run.attainment(scenario.arrivals, past), run.gpu_hours(gpus_per_replica, past), i)
              for i, run in enumerate(runs)]
    att, gpu, i = _cheapest_meeting(scored, slo)
    p = points[i]
    return TunedOnPast(p.knob, p.label, att >= slo, p.slo_attainment, p.gpu_hours, att, gpu)


Baselines = Mapping[str, tuple[list[Point], list[RunResult]]]


def run_auto(scenario: Scenario, model: ModelSettings, forecasts: ForecastSource, *,
             cluster: ClusterSpec, control: ControlSpec, lead_s: float, oracle_gpu_hours: float,
             baselines: Baselines | Callable[[], Baselines],
             progress: Callable[[int], None] | None = None) -> AutoResult:
    """Run the self-tuned policy once and compare it (no sweep, no hindsight).

    ``baselines`` (each one's sweep points and runs) may be a callable, called after the run:
    they may still be simulating in another process. ``progress`` hears of each simulated day.
    """
    import time

    started = time.perf_counter()
    slo = model.policy.slo
    assert slo is not None
    controller = SelfTuned(model, forecasts, lead_s, cluster.node_provision_s, scenario.minutes,
                           hpa_window_seconds=control.scale_down_window_s, progress=progress)
    run = simulate(scenario, controller, cluster, control)
    controller.progress = None
    seconds = time.perf_counter() - started
    if callable(baselines):
        baselines = baselines()
    window, gpus = scenario.window, cluster.gpus_per_replica
    attainment, gpu_hours = run.attainment(scenario.arrivals, window), run.gpu_hours(gpus, window)
    frontiers = {name: points for name, (points, _) in baselines.items()}
    ratios, best, best_ratio = versus(gpu_hours, attainment, frontiers)
    past = {}
    for name, (points, runs) in baselines.items():
        tuned = tuned_on_past(points, runs, scenario, slo=slo.onTime, gpus_per_replica=gpus)
        if tuned is not None:
            past[name] = tuned
    return AutoResult(
        slo=slo.onTime, slo_attainment=attainment, gpu_hours=gpu_hours,
        vs_oracle=gpu_hours / oracle_gpu_hours if oracle_gpu_hours > 0 else math.nan,
        vs_baselines=ratios, best_baseline=best, best_baseline_ratio=best_ratio,
        tuned_on_past=past, run=run, controller=controller, seconds=seconds,
        episodes=late_episodes(scenario.demand, run.late, window))


TIMELINE_COLUMNS = ("timestamp_utc", "arrivals", "observed_demand", "desired", "ready", "billed",
                    "late", "margin")


def write_timeline(result: AutoResult, scenario: Scenario, path: Path) -> None:
    """One row per simulated minute of the auto policy (docs/BACKTEST.md ``--timeline``).

    ``observed_demand`` is what the policy saw of that minute (empty where it saw nothing);
    ``desired`` its answer at that minute; ``margin`` the margin in use as one number.
    """
    c, run = result.controller, result.run
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(TIMELINE_COLUMNS)
        for t in range(scenario.minutes):
            out.writerow([
                format_timestamp(scenario.start + t * MINUTE), _num(scenario.arrivals[t]), _num(c.demand[t]),
                _num(c.desired[t]), int(run.ready[t]), int(run.billed[t]), _num(run.late[t]),
                _num(c.margin[t]),
            ])


TUNER_LOG_COLUMNS = ("timestamp_utc", "measured_on_time", "requests", "budget", "chosen", "margin",
                     "replayed_on_time", "aim", "factor", "applied_to", "standby_replicas", "spread",
                     "cap_replicas", "hold_seconds")


def write_tuner_log(result: AutoResult, path: Path) -> None:
    """One row per hourly tuner step of the auto policy (docs/BACKTEST.md ``--tuner-log``): the
    share it was fed, the week's budget (calm, spent, or calm for a one-off burst), and the margin
    it holds after the step, read out as serve's log and ``prewarm explain`` read it out."""
    capacity = result.controller.model.capacityPerReplica
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(TUNER_LOG_COLUMNS)
        for step in result.controller.steps:
            m = step.margin
            terms = m.terms(capacity)
            out.writerow([
                format_timestamp(step.at), _num(step.on_time), _num(step.requests), step.budget,
                int(step.chosen), describe(terms), _num(m.expected), _num(m.aim), _num(m.factor),
                terms["applied_to"], _num(terms["standby_replicas"]), _num(m.spread),
                _num(terms["cap_replicas"]), _num(m.hold_seconds),
            ])


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"
