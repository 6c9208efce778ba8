"""``prewarm demo``: the real scaler, driven like KEDA drives it, on a replayed trace in fast time.

No Prometheus and no Kubernetes: the real :class:`~scaler.engine.Engine` (refresh, refits in a
worker process) and the real gRPC ExternalScaler run on a virtual clock. A KEDA-like client polls
them over a loopback socket (GetMetricSpec, GetMetrics, IsActive, KEDA's value rules), and a
simulated Deployment with cold starts follows the HPA rules of the backtest
(:mod:`scaler.backtest.sim`): replicas are billed when ordered and serve one cold start later;
requests that find no free replica queue up and count late. The simulated replicas report
``running + waiting`` as vLLM would, so the scaler sees its own backlog.

A live terminal view shows demand, forecast, replicas and late requests (plain lines when stdout
is not a terminal). Then the backtest replays the same trace for every policy and prints the
comparison, and a PNG is written (default ``out/demo.png``). About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forecasting.durations import accept_negative_durations
from forecasting.traces import TraceError, read_trace, synthetic_trace
from forecasting.types import Series
from scaler.backtest.cli import UsageError, cold_start_range, duration, writable
from scaler.backtest.live import Fluid, LiveView, Record, view_lines
from scaler.backtest.scenario import MINUTE, Scenario, ScenarioError, scenario_from_series
from scaler.backtest.sim import Cluster, ClusterSpec, ControlSpec, Hpa, Metric
from scaler.core.clock import FakeClock
from scaler.core.config import ModelSettings, Settings, parse_settings
from scaler.core.model import Observation
from scaler.fitpool import FitPool

MODEL = "demo"
SLO = 0.99
"""The demo's only tuning: 99 % of requests on time. prewarm chooses its margin itself."""


# --- the traffic the scaler sees ---------------------------------------------------------------


class DemoSource:
    """MetricSource over the replayed trace and the simulated Deployment.

    ``history``: the trace's arrivals per minute (what Prometheus would hold). ``observe``: what
    the simulated vLLM replicas report now - the last complete minute's arrivals plus the requests
    still waiting (the fluid model's running + waiting).
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.minute = 0
        self.backlog = 0.0
        self.on_time: float | None = None
        """The simulated replicas' on-time share over the SLO window (vLLM's queue-time histogram)."""
        self.on_time_requests = math.nan
        """Requests behind ``on_time`` (the histogram's count over the window; 0: an idle window,
        NaN: nothing read yet)."""

    def observe(self, models: Sequence[ModelSettings], *, now: float) -> Mapping[str, Observation]:
        last = self.minute - 1
        demand = float(self.scenario.arrivals[last]) + self.backlog if last >= 0 else None
        # Both, as the Prometheus source reads them: the tuner weighs a share by its requests.
        # An idle window reads as no share and 0 requests; before the first read, nothing.
        signals: dict[str, float] = {}
        if self.on_time is not None:
            signals = {"slo_on_time_ratio": self.on_time, "slo_requests": self.on_time_requests}
        elif self.on_time_requests == 0:
            signals = {"slo_requests": 0.0}
        return {m.name: Observation(model=m.name, at=now, demand=demand, signals=signals) for m in models}

    def history(self, model: ModelSettings, *, start: float, end: float, step_seconds: int) -> Series:
        sc = self.scenario
        first = max(0, math.floor((start - sc.start) / MINUTE))
        stop = max(first, min(sc.minutes, math.floor((end - sc.start) / MINUTE)))
        return Series(sc.start + first * MINUTE, MINUTE, sc.arrivals[first:stop])

    def on_time_history(self, model: ModelSettings, *, start: float, end: float,
                        step_seconds: int) -> Sequence[tuple[float, float | None, float]]:
        """Nothing was served before the demo starts: no measured share to recall."""
        return ()


# --- KEDA, as a client ---------------------------------------------------------------------------


def keda_value(float_value: float, int_value: int) -> float:
    """KEDA 2.20: the float if > 0 else the int; 3 decimals; NaN/Inf/negative -> 0."""
    value = float_value if float_value > 0 else float(int_value)
    if not math.isfinite(value) or value < 0:
        return 0.0
    return round(value, 3)


class KedaPoller:
    """One ScaledObject's poll cycle: GetMetricSpec, GetMetrics per spec, IsActive."""

    def __init__(self, channel: Any, model: str) -> None:
        from scaler._pb import externalscaler_pb2 as pb
        from scaler._pb import externalscaler_pb2_grpc as pb_grpc

        self.pb = pb
        self.stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        self.ref = pb.ScaledObjectRef(name="vllm-demo", namespace="llm", scalerMetadata={
            "scalerAddress": "prewarm.prewarm.svc:9090", "model": model})
        self.errors = 0

    async def poll(self) -> Metric | None:
        """The metric the HPA gets (None when an RPC failed: KEDA keeps the count)."""
        import grpc

        pb = self.pb
        try:
            spec = await self.stub.GetMetricSpec(self.ref, timeout=3.0)
            total, target = 0.0, 1.0
            for s in spec.metricSpecs:
                target = keda_value(s.targetSizeFloat, s.targetSize) or 1.0
                answer = await self.stub.GetMetrics(
                    pb.GetMetricsRequest(scaledObjectRef=self.ref, metricName=s.metricName), timeout=3.0)
                total += sum(keda_value(v.metricValueFloat, v.metricValue) for v in answer.metricValues)
            active = (await self.stub.IsActive(self.ref, timeout=3.0)).result
        except grpc.aio.AioRpcError:
            self.errors += 1
            return None
        return Metric(total, target, bool(active))


# --- setup ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``prewarm demo``."""
    accept_negative_durations(parser)
    parser.add_argument("--trace", default="synthetic",
                        help="`synthetic` (built-in 14-day daily+weekly trace) or a trace CSV")
    parser.add_argument("--history", default="7d", help="history the forecaster starts with (7d)")
    parser.add_argument("--hours", type=float, default=24.0, help="virtual hours replayed live (24)")
    parser.add_argument("--speed", type=float, default=1440.0,
                        help="virtual seconds per real second (1440: a day in a minute)")
    parser.add_argument("--cold-start", default="20m", help="replica cold start (default 20m)")
    parser.add_argument("--peak-replicas", type=int, default=20,
                        help="replicas the trace's busiest minute needs (sets capacity; 20)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="gRPC address (default a free port)")
    parser.add_argument("--plot", default="out/demo.png", help="PNG written at the end (out/demo.png)")
    parser.add_argument("--json", metavar="OUT", help="also write the backtest JSON here")
    parser.add_argument("--no-backtest", action="store_true", help="skip the backtest comparison")
    parser.add_argument("--no-live", action="store_true", help="plain lines even on a terminal")


@dataclass(frozen=True)
class DemoPlan:
    """Validated flags: the scenario, where the live replay starts, and the scaler's settings."""

    scenario: Scenario
    start_minute: int
    minutes: int
    cold_s: tuple[float, float]
    settings: Settings


def plan(args: argparse.Namespace) -> DemoPlan:
    """Everything the demo needs from the flags (UsageError / ScenarioError / TraceError)."""
    history = duration(args.history, "--history")
    if history < 86400:
        raise UsageError(f"--history {args.history}: must be at least 1d (a daily season)")
    if not 0 < args.hours <= 14 * 24:
        raise UsageError(f"--hours {args.hours:g}: must be in (0, 336]")
    if not args.speed > 0:
        raise UsageError(f"--speed {args.speed:g}: must be > 0")
    cold = cold_start_range(args.cold_start)
    series = (synthetic_trace(days=14, step_seconds=60, seed=0).series if args.trace == "synthetic"
              else read_trace(args.trace).series)
    full = scenario_from_series(series, name=str(args.trace), warmup_seconds=history,
                                peak_replicas=args.peak_replicas, warmup_text=args.history,
                                warmup_flag="--history")
    start, minutes = full.warmup_minutes, round(args.hours * 60)
    if start + minutes > full.minutes:
        raise UsageError(f"--hours {args.hours:g}: the trace has only "
                         f"{(full.minutes - start) / 60:.1f} h after --history {args.history}")
    scenario = scenario_from_series(series, name=str(args.trace), warmup_seconds=history,
                                    capacity=full.capacity)
    return DemoPlan(scenario, start, minutes, cold, demo_settings(full, cold, args.peak_replicas, history))


def demo_settings(scenario: Scenario, cold: tuple[float, float], peak: int, history: float) -> Settings:
    """The scaler's config: what ``serve`` would run for this model (arrivals per minute)."""
    lo, hi = cold
    raw = {
        "replay": {"trace": "synthetic"},  # the demo passes its own source; this only validates
        "defaults": {"refreshInterval": "60s", "refitInterval": "6h", "history": history,
                     "step": "1m", "pollingInterval": "30s", "staleAfter": "5m",
                     "slo": {"onTime": SLO, "window": "1h"},
                     "coldStart": {"initial": lo + 0.9 * (hi - lo), "learn": False}},
        "models": [{"name": MODEL, "capacityPerReplica": scenario.capacity, "minReplicas": 1,
                    "maxReplicas": 2 * peak, "demand": "arrivals"}],
    }
    return parse_settings(raw, source="demo").settings


# --- the run -------------------------------------------------------------------------------------


class Demo:
    """The live part: engine + gRPC server + KEDA poller + simulated Deployment, virtual time."""

    def __init__(self, p: DemoPlan, args: argparse.Namespace) -> None:
        from scaler.edges.keda.servicer import ExternalScalerServicer, GrpcMetrics
        from scaler.engine import Engine
        from scaler.snapshot import SnapshotHolder, initial_snapshot

        self.plan, self.args = p, args
        sc = p.scenario
        self.clock = FakeClock(sc.start + p.start_minute * MINUTE)
        self.source = DemoSource(sc)
        self.holder = SnapshotHolder(initial_snapshot(p.settings, self.clock.now()))
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        # serve's pool: its worker dies with the demo, even one killed outright.
        self.executor = FitPool(1)
        self.engine = Engine(self.clock, p.settings, self.source, self.holder, fit_executor=self.executor)
        self.servicer = ExternalScalerServicer(self.holder, self.clock, GrpcMetrics(),
                                               self.engine.finish)
        control = ControlSpec(max_replicas=p.settings.models[0].maxReplicas)
        start_ready = max(1, math.ceil(float(sc.demand[p.start_minute - 1]) * 1.2))
        self.fluid = Fluid(Hpa(control), Cluster(ClusterSpec(cold_start_s=p.cold_s), ready=start_ready),
                           sc.capacity)
        self.record = Record()
        self.view = LiveView(sys.stdout, live=sys.stdout.isatty() and not args.no_live)

    async def run(self) -> Record:
        import grpc

        from scaler.edges.keda.server import create_grpc_server

        server, _health, port = await create_grpc_server(self.servicer, self.args.listen, None)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.address = f"{self.args.listen.rpartition(':')[0]}:{port}"
        try:
            poller = KedaPoller(channel, MODEL)
            await self.engine.backfill()
            await self._replay(poller)
        finally:
            await channel.close()
            await self.holder.close()
            await server.stop(0)
            self.executor.close()
        return self.record

    async def _replay(self, poller: KedaPoller) -> None:
        p = self.plan
        refit_every = round(p.settings.defaults.refitInterval / MINUTE)
        began = time.monotonic()
        for t in range(p.minutes):
            minute = p.start_minute + t
            now = p.scenario.start + minute * MINUTE
            self.clock.set(now)
            self.source.minute, self.source.backlog = minute, self.fluid.backlog
            self.source.on_time, self.source.on_time_requests = self.record.on_time(window=60, delay=1)
            if t % refit_every == 0:
                await self.engine.refit()  # virtual time waits for the fit (a worker process)
            elif t % 60 == 0:
                await self.engine.retune()  # the SLO tuner's hourly step, between refits
            await self.engine.refresh()
            self.fluid.scale(await poller.poll(), minute, now)
            self._step(minute)
            self.view.update(view_lines(self.record, self._info(now, (t + 1) / p.minutes)),
                             minute=t, force=t == p.minutes - 1)
            await asyncio.sleep(max(0.0, began + (t + 1) * MINUTE / self.args.speed - time.monotonic()))

    def _step(self, minute: int) -> None:
        sc, rec = self.plan.scenario, self.record
        decision = self.holder.current.decisions[MODEL]
        arrivals = float(sc.arrivals[minute])
        ready, billed, late = self.fluid.serve(arrivals, minute)
        rec.minutes.append(minute)
        rec.arrivals.append(arrivals)
        rec.demand.append(arrivals / sc.capacity)
        peak = decision.forecast_peak
        rec.forecast_peak.append((peak if peak is not None else math.nan) / sc.capacity)
        rec.answered.append(decision.replicas)
        rec.ordered.append(self.fluid.pool.count)
        rec.ready.append(ready)
        rec.late.append(late)
        rec.billed.append(billed)

    def _info(self, now: float, done: float) -> dict[str, Any]:
        snap = self.holder.current
        decision = snap.decisions[MODEL]
        fit = snap.fits.get(MODEL)
        lo, hi = self.plan.cold_s
        return {"now": now, "done": done, "address": self.address, "polling": 30.0,
                "cold": f"{lo / 60:g}m" if lo == hi else f"{lo / 60:g}m:{hi / 60:g}m",
                "quantile": 100 * snap.settings.models[0].policy.scale_quantile,
                "slo": decision.slo_target, "on_time": decision.on_time, "margin": decision.margin,
                "lead": decision.lead_seconds, "reason": decision.reason.value,
                "forecaster": fit.model_name if fit else "not fitted yet",
                # Why there is no forecast peak (e.g. "forecast demoted: ... skill 1.3 >= maxSkill
                # 1"), so the view says so instead of printing nan.
                "no_forecast": (decision.message or "no forecast") if decision.forecast_peak is None
                else None}


def compare(p: DemoPlan, rec: Record, args: argparse.Namespace) -> Any:
    """The backtest on the same trace up to the end of the replay, every policy; prints the table."""
    from dataclasses import replace

    from scaler.backtest.cli import execute
    from scaler.backtest.report import print_table, to_json
    from scaler.backtest.sweep import BacktestSpec

    sc = p.scenario
    stop = p.start_minute + p.minutes
    window = replace(sc, arrivals=sc.arrivals[:stop], observed=sc.observed[:stop], key="")
    spec = BacktestSpec(cluster=ClusterSpec(cold_start_s=p.cold_s), peak_replicas=args.peak_replicas,
                        control=ControlSpec(max_replicas=p.settings.models[0].maxReplicas),
                        jobs=min(2, os.cpu_count() or 1), slo=SLO)
    result = execute(window, spec, progress=True)
    print_table(result, sys.stdout)
    twin = result.auto
    assert twin is not None  # spec.slo is set
    print(f"\nlive demo (real gRPC server, slo {SLO:g}): SLO attainment {1 - rec.late_share():.5f}, "
          f"{rec.gpu_hours():.1f} GPU-hours; backtest self-tuned policy on the same window: "
          f"{twin.slo_attainment:.5f}, {twin.gpu_hours:.1f} GPU-hours")
    if args.json:
        import json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(to_json(result), indent=2) + "\n")
    return result


def plot(p: DemoPlan, rec: Record, result: Any, path: Path) -> None:
    """Live run (demand, forecast, replicas, late) over the backtest's replicas and Pareto."""
    from forecasting.extras import pyplot
    from scaler.backtest.plots import plot_pareto, plot_replicas

    plt = pyplot("demo")

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 3 if result is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(13, 4 + 3.5 * (rows - 1)), squeeze=False)
    ax = axes[0][0]
    hours = np.asarray(rec.minutes, dtype=np.float64) / 60.0
    ax.plot(hours, rec.demand, color="black", lw=0.6, label="demand")
    ax.plot(hours, rec.forecast_peak, color="tab:blue", lw=0.8, ls="--",
            label="forecast median peak over the lead (the SLO margin goes on top)")
    ax.step(hours, rec.ordered, where="post", color="tab:green", lw=0.8, label="ordered (billed)")
    ax.step(hours, rec.ready, where="post", color="tab:olive", lw=1.0, label="ready")
    late = [h for h, x in zip(hours, rec.late, strict=True) if x > 0]
    ax.scatter(late, [0.2] * len(late), marker="|", color="tab:red", label="minutes with late requests")
    ax.set_ylabel("replicas")
    ax.set_xlabel("hours since trace start")
    ax.set_title(f"prewarm demo (live, real gRPC server): late {100 * rec.late_share():.3f} %, "
                 f"{rec.gpu_hours():.0f} GPU-hours")
    ax.legend(loc="upper left", fontsize=8)
    if result is not None:
        plot_replicas(result, axes[1][0])
        plot_pareto(result, axes[2][0])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """``prewarm demo``: live replay, then the backtest comparison and the PNG. Exit 2 on bad flags."""
    from forecasting.extras import need_plot

    need_plot("demo", "its picture (--plot, out/demo.png by default)")  # say so before minutes of replay
    try:
        writable(args.plot, "--plot")
        writable(args.json, "--json")
        p = plan(args)
    except (UsageError, ScenarioError, TraceError) as exc:
        print(f"prewarm demo: error: {exc}", file=sys.stderr)
        return 2
    rec = asyncio.run(Demo(p, args).run())
    result = None if args.no_backtest else compare(p, rec, args)
    plot(p, rec, result, Path(args.plot))
    print(f"\nwrote {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaler.demo", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
