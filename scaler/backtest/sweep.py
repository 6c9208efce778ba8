"""One backtest: every policy at every knob setting, the oracle, and the headline figures.

The simulation runs from the trace's first minute; figures are taken over the evaluation window
(after the warmup). The predictive policy's forecasts are computed once (:mod:`.tape`) and
shared by all of its sweep points.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from functools import partial
from queue import Empty, Queue

from scaler.backtest.auto import BASELINES, AutoResult, auto_model, run_auto
from scaler.backtest.oracle import oracle_billed, oracle_cold_minutes
from scaler.backtest.pareto import Point, cost_at_slo
from scaler.backtest.policies import (
    ForecastSource,
    Predictive,
    ReactiveQueue,
    ReactiveUtil,
    Static,
    lead_seconds,
)
from scaler.backtest.scenario import MINUTE, Scenario
from scaler.backtest.sim import ClusterSpec, Controller, ControlSpec, IntArray, RunResult, simulate
from scaler.backtest.tape import ForecastTape, TapeSpec, worker_pool
from scaler.core.config import ModelSettings, parse_settings
from scaler.core.forecasts import fit_horizon_steps

POLICIES = ("predictive", "reactive-util", "reactive-queue", "static")
SLOS = (0.99, 0.999)
UTILIZATIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
THRESHOLDS = (20.0, 10.0, 5.0, 3.0, 2.0, 1.0)
STATIC_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
PREDICTIVE_QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.99)
PREDICTIVE_HEADROOMS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0)
PREDICTIVE_KNOBS: tuple[tuple[float, float], ...] = tuple(
    (q, h) for h in PREDICTIVE_HEADROOMS for q in PREDICTIVE_QUANTILES)
"""(forecast quantile, headroom): serve's ``quantile``, and ``capacityPerReplica = c / headroom``
(what a user sets to keep replicas below full load, like reactive-util's target u = 1 / headroom)."""

DAY = 86400.0
REFIT_INTERVALS = (6 * 3600.0, 8 * 3600.0, 12 * 3600.0, DAY)
MAX_FITS = 480
"""Fits a backtest makes at most by default: every 6 hours up to 120 days of trace."""

Progress = Callable[[int], None]


@dataclass(frozen=True)
class BacktestSpec:
    """Everything but the trace; seconds unless named otherwise."""

    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    control: ControlSpec = field(default_factory=ControlSpec)
    policies: tuple[str, ...] = POLICIES
    peak_replicas: int = 20
    refit_every_s: float | None = None
    """Predictive refit interval; None: :func:`refit_every` of the trace's length."""
    stabilization_s: float = 600.0
    """The predictive policy's own scale-down stabilization (serve's ``scaleDown.stabilization``)."""
    predictive_knobs: tuple[tuple[float, float], ...] = PREDICTIVE_KNOBS
    seasons_s: tuple[int, ...] = (86400, 604800)
    jobs: int = 1
    """Processes for fits."""
    slo: float | None = None
    """Also run the self-tuned policy configured with this on-time target (``--slo``)."""

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ValueError(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}")
        if self.refit_every_s is not None and self.refit_every_s < MINUTE:
            raise ValueError(f"refit interval {self.refit_every_s:g}s: must be >= 60s")

    @property
    def lead_s(self) -> float:
        c = self.cluster
        return lead_seconds(c.cold_start_p90_s, c.node_provision_s, self.control.polling_s)


@dataclass(frozen=True)
class Sweep:
    """One policy's sweep: its points and runs (same order)."""

    name: str
    points: list[Point]
    runs: list[RunResult]

    def cost_at(self, slo: float) -> float | None:
        return cost_at_slo(self.points, slo)


@dataclass(frozen=True)
class Backtest:
    """The result of :func:`run_backtest`."""

    scenario: Scenario
    spec: BacktestSpec
    oracle: IntArray
    """Oracle's billed replicas per minute over the whole trace."""
    sweeps: dict[str, Sweep]
    tape: ForecastTape | None
    seconds: dict[str, float]
    """Wall time by phase: ``forecasts`` (until the tape was complete), each policy's runs,
    ``auto``. They overlap: the tape fills in worker processes while policies run."""
    auto: AutoResult | None = None
    """The self-tuned run (``spec.slo``), compared without hindsight."""

    @property
    def oracle_gpu_hours(self) -> float:
        return float(self.oracle[self.scenario.window].sum()) * self.spec.cluster.gpus_per_replica / 60.0

    def best_reactive(self, slo: float) -> tuple[str, float] | None:
        """The cheapest reactive policy at ``slo`` (reactive-util or reactive-queue), if any."""
        costs = [(name, s.cost_at(slo)) for name, s in self.sweeps.items() if name.startswith("reactive")]
        reached = [(n, c) for n, c in costs if c is not None]
        return min(reached, key=lambda nc: nc[1]) if reached else None


def predictive_model(scenario: Scenario, spec: BacktestSpec, *, quantile: float,
                     headroom: float = 1.0) -> ModelSettings:
    """The ModelSettings ``serve`` would run with, built by the same parser as a ConfigMap."""
    c, ctl = spec.cluster, spec.control
    raw = {
        "replay": {},
        "defaults": {"pollingInterval": ctl.polling_s, "step": "1m"},
        "models": [{
            "name": "backtest", "capacityPerReplica": scenario.capacity / headroom,
            "minReplicas": ctl.min_replicas, "maxReplicas": ctl.max_replicas,
            "quantile": quantile, "demand": "arrivals",
            "coldStart": {"initial": c.cold_start_p90_s, "learn": False,
                          "nodeProvisioning": c.node_provision_s},
            "scaleDown": {"stabilization": spec.stabilization_s},
            "seasonality": list(spec.seasons_s),
        }],
    }
    return parse_settings(raw, source="backtest").settings.models[0]


def refit_every(trace_seconds: float) -> float:
    """The default refit interval: 6 hours, or on a trace too long for :data:`MAX_FITS` fits at
    that, the first of 8 and 12 hours and whole days that keeps within them.

    Serve refits every 10 minutes; between refits ``update`` follows the level and a refit only
    re-estimates parameters on data that barely moved, so the interval hardly shows in the
    figures (docs/BACKTEST.md) while a fit is most of what a long backtest costs. A budget of
    fits, not a fixed interval, keeps that cost from growing with the trace.
    """
    for every in REFIT_INTERVALS:
        if trace_seconds / every <= MAX_FITS:
            return every
    return DAY * math.ceil(trace_seconds / MAX_FITS / DAY)


def refit_seconds(scenario: Scenario, spec: BacktestSpec) -> float:
    """The refit interval of this backtest: the one given, or :func:`refit_every` of the trace."""
    return spec.refit_every_s if spec.refit_every_s is not None else refit_every(scenario.minutes * MINUTE)


def tape_spec(scenario: Scenario, spec: BacktestSpec) -> TapeSpec:
    """Fit schedule: one refit interval before the evaluation window, then every interval."""
    refit = max(1, round(refit_seconds(scenario, spec) / MINUTE))
    lead = spec.lead_s
    first = scenario.warmup_minutes - refit
    if spec.slo is not None:  # the tuner learns from its own forecasts: fit from the first day on
        first = min(first, 1440)
    return TapeSpec(
        horizon_seconds=lead + spec.cluster.node_provision_s,
        fit_horizon_steps=fit_horizon_steps(lead, MINUTE),
        refit_every=refit, first_fit=max(1, first),
        every=spec.control.every_minutes, seasons=spec.seasons_s,
    )


def controllers(name: str, scenario: Scenario, spec: BacktestSpec,
                tape: ForecastSource | None) -> Iterator[tuple[Point, Callable[[], Controller]]]:
    """(knob point without results, controller factory) for each sweep point of a policy."""
    if name == "reactive-util":
        for u in UTILIZATIONS:
            yield Point(u, 0, 0, f"u={u:g}"), partial(ReactiveUtil, scenario.capacity, u)
    elif name == "reactive-queue":
        for th in THRESHOLDS:
            yield Point(th, 0, 0, f"waiting/{th:g}"), partial(ReactiveQueue, th)
    elif name == "static":
        counts = sorted({max(1, round(f * spec.peak_replicas)) for f in STATIC_FACTORS})
        for k in counts:
            yield Point(k, 0, 0, f"{k} replicas"), partial(Static, k)
    elif name == "predictive":
        assert tape is not None
        for q, headroom in spec.predictive_knobs:
            model = predictive_model(scenario, spec, quantile=q, headroom=headroom)
            label = f"q{q:g}" + (f" x{headroom:g}" if headroom != 1 else "")
            yield Point(q, 0, 0, label, headroom), partial(
                Predictive, model, tape, spec.lead_s, spec.cluster.node_provision_s)


def progress_steps(scenario: Scenario, spec: BacktestSpec) -> int:
    """Steps of the progress bar: fits, simulated sweep points, and the self-tuned run's days."""
    sizes = {"reactive-util": len(UTILIZATIONS), "reactive-queue": len(THRESHOLDS),
             "static": len({max(1, round(f * spec.peak_replicas)) for f in STATIC_FACTORS}),
             "predictive": len(spec.predictive_knobs)}
    fits = "predictive" in spec.policies or spec.slo is not None
    days = (scenario.minutes - 1) // 1440 + 1 if spec.slo is not None else 0
    return (fit_count(scenario, spec) if fits else 0) + sum(sizes[p] for p in spec.policies) + days


def run_sweep(name: str, scenario: Scenario, spec: BacktestSpec, tape: ForecastSource | None,
              progress: Progress | None = None) -> Sweep:
    """Simulate every knob of one policy; attainment and GPU-hours over the evaluation window."""
    return _sweep(name, sweep_points(name, scenario, spec, tape, progress=progress))


def sweep_points(name: str, scenario: Scenario, spec: BacktestSpec, tape: ForecastSource | None,
                 progress: Progress | None = None) -> list[tuple[Point, RunResult]]:
    """Every knob of one policy, each simulated."""
    return [_simulated(scenario, spec, *point, progress) for point in controllers(name, scenario, spec, tape)]


def _simulated(scenario: Scenario, spec: BacktestSpec, blank: Point, make: Callable[[], Controller],
               progress: Progress | None) -> tuple[Point, RunResult]:
    run = simulate(scenario, make(), spec.cluster, spec.control)
    window, gpus = scenario.window, spec.cluster.gpus_per_replica
    if progress:
        progress(1)
    return replace(blank, slo_attainment=run.attainment(scenario.arrivals, window),
                   gpu_hours=run.gpu_hours(gpus, window)), run


def _sweep(name: str, done: list[tuple[Point, RunResult]]) -> Sweep:
    return Sweep(name, [point for point, _ in done], [run for _, run in done])


def shared_sweep(scenario: Scenario, spec: BacktestSpec, tape: ForecastTape, aside: Executor,
                 progress: Progress | None = None, ticks: Ticks | None = None) -> Sweep:
    """The predictive sweep on two cores: here, knob after knob, while the tape fills; once it is
    complete, ``aside`` gets a copy of the tape and both processes take the knobs left from one
    queue, so they finish together whatever else ``aside`` had to run first (the baselines).

    Its runs are most of a long trace's hindsight backtest (45 runs of about 4 s on 215 days)
    and need the whole tape, which a worker can hold only once it is made (a copy is 170 MB of
    arrays on 215 days: well under a second to send, a few seconds to unpack). An even split
    instead left this process idle for the last 40 s of a year (the worker ran the baselines
    first). The worker's runs tick through ``ticks``, if given.
    """
    points = list(controllers("predictive", scenario, spec, tape))
    done: dict[int, tuple[Point, RunResult]] = {}
    with multiprocessing.get_context("spawn").Manager() as manager:
        knobs: Queue[int] = manager.Queue()
        for i in range(len(points)):
            knobs.put(i)
        remote: Future[list[tuple[int, tuple[Point, RunResult]]]] | None = None
        while True:
            if remote is None and knobs.qsize() >= 2 and tape.filled():
                remote = aside.submit(queued_points, "predictive", scenario, spec, tape.copy(), knobs,
                                      None if ticks is None else ticks.put)
            try:
                i = knobs.get_nowait()
            except Empty:
                break
            done[i] = _simulated(scenario, spec, *points[i], progress)
        while remote is not None:
            try:
                done.update(remote.result(timeout=1.0))
                remote = None
            except TimeoutError:  # the worker's runs tick on the bar meanwhile
                pass
            if ticks is not None:  # its ticks are all queued before its result is sent
                ticks.drain()
    return _sweep("predictive", [done[i] for i in range(len(points))])


def queued_points(name: str, scenario: Scenario, spec: BacktestSpec, tape: ForecastSource, knobs: Queue[int],
                  progress: Progress | None = None) -> list[tuple[int, tuple[Point, RunResult]]]:
    """Knobs of one policy (by position) taken from ``knobs`` until it is empty, each simulated;
    other processes take from the same queue."""
    points = list(controllers(name, scenario, spec, tape))
    out: list[tuple[int, tuple[Point, RunResult]]] = []
    while True:
        try:
            i = knobs.get_nowait()
        except Empty:
            return out
        out.append((i, _simulated(scenario, spec, *points[i], progress)))


class Ticks:
    """Progress from worker processes: they call :attr:`put` (it pickles: a manager's queue),
    and this process hands their ticks on whenever it ticks itself (call it) or :meth:`drain`-s."""

    def __init__(self, queue: Queue[int], progress: Progress) -> None:
        self.put: Progress = queue.put
        self._queue, self._progress = queue, progress

    def __call__(self, n: int) -> None:
        self._progress(n)
        self.drain()

    def drain(self) -> None:
        # get_nowait, not empty() then get(): the forecast tape's thread ticks too.
        while True:
            try:
                n = self._queue.get_nowait()
            except Empty:
                return
            self._progress(n)


@contextlib.contextmanager
def ticks_from_workers(progress: Progress) -> Iterator[Ticks]:
    """:class:`Ticks` on a queue of its own (a pool's worker cannot take a plain
    ``multiprocessing.Queue`` as an argument; a manager's it can)."""
    with multiprocessing.get_context("spawn").Manager() as manager:
        yield Ticks(manager.Queue(), progress)


def timed_sweep(name: str, scenario: Scenario, spec: BacktestSpec, tape: ForecastSource | None = None,
                progress: Progress | None = None) -> tuple[Sweep, float]:
    """:func:`run_sweep` and its wall time (here, or in another process for the baselines)."""
    started = time.perf_counter()
    return run_sweep(name, scenario, spec, tape, progress), time.perf_counter() - started


def build_tape(scenario: Scenario, spec: BacktestSpec, progress: Progress | None = None) -> ForecastTape:
    """Fit on the schedule and record every decision minute's forecast (past data only). With
    ``spec.jobs`` > 1 the tape fills in worker processes while the caller goes on."""
    return ForecastTape(scenario, tape_spec(scenario, spec), jobs=spec.jobs, progress=progress)


def fit_count(scenario: Scenario, spec: BacktestSpec) -> int:
    return len(tape_spec(scenario, spec).fit_minutes(scenario.minutes))


def run_backtest(scenario: Scenario, spec: BacktestSpec, progress: Progress | None = None) -> Backtest:
    """Every requested policy swept, plus the oracle, over ``scenario``.

    With ``spec.jobs`` > 1 the work is spread over processes: the forecast tape fills in a pool
    while the policies that need no forecasts run in another process, and the predictive sweep
    and the self-tuned run read the tape here as it fills. So the phases in ``Backtest.seconds``
    overlap: each is the wall time of its own work (``forecasts``: until the tape was complete).
    """
    seconds: dict[str, float] = {}
    wants_tape = "predictive" in spec.policies or spec.slo is not None
    pooled = spec.jobs > 1 and wants_tape
    with contextlib.ExitStack() as stack:
        # The workers' runs tick the bar as they finish (made first: it outlives the pools).
        ticks = stack.enter_context(ticks_from_workers(progress)) if pooled and progress else None
        progress = ticks or progress
        tape = build_tape(scenario, spec, progress) if wants_tape else None
        if tape is not None:
            stack.callback(tape.close)  # on an error: stop fitting
        # One process for the baselines while this one reads the tape (with only baselines to
        # run, they run here).
        aside = stack.enter_context(worker_pool(1)) if pooled else None
        return _run(scenario, spec, tape, aside, seconds, progress, ticks)


def _fail_tape(tape: ForecastTape, future: Future[tuple[Sweep, float]]) -> None:
    """A baseline failed in its worker (the OOM killer took it): this process is reading the
    tape for the self-tuned run, which may take minutes more; fail it at its next read."""
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        tape.fail(exc)


def _run(scenario: Scenario, spec: BacktestSpec, tape: ForecastTape | None, aside: Executor | None,
         seconds: dict[str, float], progress: Progress | None, ticks: Ticks | None) -> Backtest:
    pending: dict[str, Future[tuple[Sweep, float]]] = {}
    sweeps: dict[str, Sweep] = {}

    def here(name: str) -> None:
        sweeps[name], seconds[name] = timed_sweep(name, scenario, spec, tape, progress)

    def collect() -> dict[str, Sweep]:
        for name, future in pending.items():
            sweeps[name], seconds[name] = future.result()
            if progress and ticks is None:
                progress(len(sweeps[name].points))
        pending.clear()
        if ticks is not None:  # a worker's ticks are all queued before its result is sent
            ticks.drain()
        return sweeps

    remote = None if ticks is None else ticks.put
    for name in spec.policies:
        if name != "predictive" and aside is not None:
            pending[name] = aside.submit(timed_sweep, name, scenario, spec, None, remote)
            if tape is not None:
                pending[name].add_done_callback(partial(_fail_tape, tape))
        elif name != "predictive":
            here(name)
    if "predictive" in spec.policies and aside is not None and tape is not None:
        started = time.perf_counter()
        sweeps["predictive"] = shared_sweep(scenario, spec, tape, aside, progress, ticks)
        seconds["predictive"] = time.perf_counter() - started
    elif "predictive" in spec.policies:
        here("predictive")
    oracle = oracle_billed(
        scenario.demand, min_replicas=spec.control.min_replicas,
        cold_start_minutes=oracle_cold_minutes(spec.cluster.cold_start_s, spec.cluster.node_provision_s))
    result = Backtest(scenario, spec, oracle, {}, tape, seconds)
    auto = None
    if spec.slo is not None and tape is not None:
        model = auto_model(scenario, slo=spec.slo, cluster=spec.cluster, control=spec.control,
                           seasons_s=spec.seasons_s)
        auto = run_auto(scenario, model, tape, cluster=spec.cluster, control=spec.control,
                        lead_s=spec.lead_s, oracle_gpu_hours=result.oracle_gpu_hours, progress=progress,
                        baselines=lambda: {n: (s.points, s.runs) for n, s in collect().items()
                                           if n in BASELINES})
        seconds["auto"] = auto.seconds
        if progress:
            progress(1)
    collect()
    if tape is not None:
        seconds["forecasts"] = tape.complete().seconds
    return replace(result, sweeps={name: sweeps[name] for name in spec.policies}, auto=auto)
