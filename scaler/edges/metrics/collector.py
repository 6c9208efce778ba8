"""/metrics: forecast vs actual, accuracy, decisions, cold starts, node pre-warm and health.

A custom collector (not global gauges): each scrape reads the current immutable snapshot, so a
model removed from the config disappears from /metrics at once and nothing is ever half-updated.
Names follow Prometheus conventions (base units, ``_seconds``, ``_ratio``, ``_total`` for
counters; the ``quantile`` label is reserved for summaries, so forecast levels are ``stat``).

Forecast vs actual on one graph: ``prewarm_forecast_for_now_demand`` is the forecast made one lead
time ago *for now*; plotted beside ``prewarm_demand`` the two line up in time. Its rolling one-sided
coverage (share of refreshes where actual demand stayed at or below it) should sit near
``prewarm_forecast_target_quantile``; much lower means the forecast under-predicts.

The SLO's series (``prewarm_slo_*``) exist only for models with an ``slo``, and each only while
its value is known: a share is not exported before a request finished in ``slo.window``.

Series that need the Kubernetes integration (learned cold starts, balloons) are still exported
without it, with the values that are true then: the configured cold start (``learned`` 0) and 0
balloon GPUs per configured pool (no Kubernetes, no balloons).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from scaler.core.clock import Clock
from scaler.core.model import Reason
from scaler.core.standby import PoolStatus, pool_prewarm_replicas
from scaler.edges import ReloadStats
from scaler.edges.metrics.families import CounterFamily, Family, GaugeFamily
from scaler.snapshot import Snapshot


@dataclass(frozen=True)
class Counters:
    """The daemon's own counters, as the app reads them at scrape time."""

    source_errors: Mapping[str, int] = field(default_factory=dict)
    refreshes: int = 0
    refits: int = 0
    fit_errors: int = 0
    last_source_success: float | None = None
    last_refresh_seconds: float = 0.0
    last_refit_seconds: float = 0.0
    config: ReloadStats | None = None
    """The live config source's reloads (None: no live source, e.g. the embedded demo)."""


KNOWN_SOURCE_ERRORS = ("unreachable", "timeout", "bad_response", "partial", "internal")
"""Always exported (0 until seen), so ``rate()`` over them is 0 rather than empty."""
ACCURACY_WINDOW_SECONDS = 86400.0
"""Rolling window of the coverage (clock seconds): one daily cycle."""
ACCURACY_BUCKET_SECONDS = 300.0
"""Coverage is kept in 5-minute buckets: 288 per model per day, whatever the refresh rate."""


@dataclass
class _Coverage:
    buckets: deque[tuple[float, int, int]] = field(default_factory=deque)
    """(bucket start, refreshes, refreshes with demand <= forecast for now), oldest first."""

    def add(self, at: float, covered: bool, window: float) -> None:
        start = at - at % ACCURACY_BUCKET_SECONDS
        if self.buckets and self.buckets[-1][0] == start:
            _, n, hits = self.buckets.pop()
        else:
            n, hits = 0, 0
        self.buckets.append((start, n + 1, hits + int(covered)))
        while self.buckets and self.buckets[0][0] <= at - window:
            self.buckets.popleft()

    def ratio(self) -> tuple[float, int] | None:
        n = sum(b[1] for b in self.buckets)
        return (sum(b[2] for b in self.buckets) / n, n) if n else None


class ForecastAccuracy:
    """Rolling coverage of the forecast made one lead time ago for now, per model.

    Fed one snapshot at a time (each generation counts once, however often it is scraped).
    ``observe`` belongs on the engine's publish path; until it is called there, the collector
    feeds it at scrape time, which samples refreshes at the scrape rate (an unbiased subsample).
    """

    def __init__(self, window_seconds: float = ACCURACY_WINDOW_SECONDS) -> None:
        self.window_seconds = window_seconds
        self._coverage: dict[str, _Coverage] = {}
        self._last_demand_at: dict[str, float] = {}
        self._generation = -1
        self._lock = threading.Lock()

    def observe(self, snap: Snapshot) -> None:
        with self._lock:
            if snap.generation == self._generation:
                return
            self._generation = snap.generation
            for name in [n for n in self._coverage if n not in snap.decisions]:
                del self._coverage[name]
                self._last_demand_at.pop(name, None)
            for name, obs in snap.observations.items():
                if obs.demand is None or not math.isfinite(obs.demand):
                    continue
                self._last_demand_at[name] = obs.at
                forecast = snap.forecast_for_now.get(name)
                if forecast is not None and math.isfinite(forecast):
                    coverage = self._coverage.setdefault(name, _Coverage())
                    coverage.add(obs.at, obs.demand <= forecast * (1 + 1e-9), self.window_seconds)

    def coverage(self, model: str) -> tuple[float, int] | None:
        """(share of refreshes with demand at or below the forecast for now, refreshes)."""
        with self._lock:
            c = self._coverage.get(model)
            return c.ratio() if c is not None else None

    def last_demand_at(self, model: str) -> float | None:
        with self._lock:
            return self._last_demand_at.get(model)


def _gauges(labels: list[str], *specs: tuple[str, str]) -> dict[str, GaugeFamily]:
    return {name: GaugeFamily(f"prewarm_{name}", doc, labels=labels) for name, doc in specs}


def _add(families: Mapping[str, GaugeFamily], labels: list[str], values: Mapping[str, float | None]) -> None:
    """One sample per known value: unknown (None) is left out, never exported as 0."""
    for name, value in values.items():
        if value is not None:
            families[name].add_metric(labels, float(value))


def _stat(q: float) -> str:
    """0.9 -> 'p90', 0.995 -> 'p99.5'."""
    return f"p{100 * q:g}"


class ForecastCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        clock: Clock,
        *,
        counters: Callable[[], Counters] | None = None,
        pools: Callable[[], Mapping[str, PoolStatus]] | None = None,
        accuracy: ForecastAccuracy | None = None,
    ) -> None:
        """``counters``: the daemon's counters; ``pools``: balloon state from the Kubernetes
        edge (None: no Kubernetes integration, so no balloons)."""
        self._snapshot = snapshot
        self._clock = clock
        self._counters = counters or Counters
        self._pools = pools
        self.accuracy = accuracy or ForecastAccuracy()

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            yield family.metric()

    def render(self) -> str:
        """Every family in the text format: the /metrics fast path (see ``families``)."""
        return "".join(family.text() for family in self.families())

    def families(self) -> Iterator[Family]:
        snap = self._snapshot()
        self.accuracy.observe(snap)
        yield from self._decisions(snap)
        yield from self._forecasts(snap)
        yield from self._accuracy(snap)
        yield from self._slo(snap)
        yield from self._cold_starts(snap)
        yield from self._node_prewarm(snap)
        yield from self._health(snap)

    def _decisions(self, snap: Snapshot) -> Iterator[Family]:
        g = _gauges(
            ["model"],
            ("desired_replicas", "Replicas prewarm asks KEDA for (GetMetrics)."),
            ("reactive_replicas", "Replicas current demand alone needs (the reactive floor)."),
            ("forecast_replicas", "Replicas the forecast's upper quantile needs over the lead window."),
            ("standby_replicas", "Standby replicas included in desired replicas."),
            ("prewarm_replicas", "Extra replicas forecast within lead + node provisioning (GPU nodes pre-warmed)."),
            ("current_replicas", "Replicas serving now, as seen by the metrics source (vLLM engines reporting)."),
            ("ready_replicas", "Ready replicas of the target Deployment (Kubernetes integration)."),
            ("min_replicas", "Configured minReplicas."),
            ("max_replicas", "Configured maxReplicas."),
            ("demand", "Current (actual) demand in the model's demand unit."),
            ("decision_valid", "1 when the decision rests on fresh data; 0 makes GetMetrics fail UNAVAILABLE."),
            ("active", "IsActive answer (1 active)."),
            ("lead_time_seconds", "Forecast lead time: cold start p90 + node provisioning + decision delay."),
            ("decision_timestamp_seconds", "When the current decision was made (Unix seconds)."),
        )
        reason = GaugeFamily("prewarm_decision_reason", "Why the decision has its replica count (1 for the current reason).", labels=["model", "reason"])
        for model, d in sorted(snap.decisions.items()):
            obs = snap.observations.get(model)
            settings = snap.settings.model(model)
            values = {
                "desired_replicas": d.replicas, "reactive_replicas": d.reactive_replicas,
                "forecast_replicas": d.forecast_replicas, "standby_replicas": d.standby,
                "prewarm_replicas": d.prewarm_replicas, "demand": d.demand,
                "decision_valid": 1.0 if d.valid else 0.0, "active": 1.0 if d.active else 0.0,
                "lead_time_seconds": d.lead_seconds, "decision_timestamp_seconds": d.at,
                "current_replicas": getattr(obs, "replicas", None),
                "ready_replicas": snap.ready_replicas.get(model),
                "min_replicas": settings.minReplicas if settings else None,
                "max_replicas": settings.maxReplicas if settings else None,
            }
            _add(g, [model], values)
            for r in Reason:
                reason.add_metric([model, r.value], 1.0 if d.reason is r else 0.0)
        yield from g.values()
        yield reason

    def _forecasts(self, snap: Snapshot) -> Iterator[Family]:
        at_lead = GaugeFamily("prewarm_forecast_demand", "Forecast demand at the lead horizon (now + lead time), by stat: mean or a quantile (p50, p90, ...).", labels=["model", "stat"])
        g = _gauges(
            ["model"],
            ("forecast_peak_demand", "Upper-quantile forecast peak over [now, now + lead] (what the decision scales to)."),
            ("forecast_for_now_demand", "Upper-quantile forecast made one lead time ago for now: plot beside prewarm_demand."),
            ("forecast_target_quantile", "Forecast quantile the model scales to (policy quantile)."),
            ("forecast_skill_mase", "MASE vs seasonal naive on the recent holdout, recomputed at every refit (< 1 beats naive)."),
            ("forecast_max_skill", "MASE at or above which the forecast is demoted (policy maxSkill)."),
            ("forecast_demoted", "1 when the model is scaled reactively because its forecast has no skill."),
            ("fit_duration_seconds", "Duration of the model's last forecaster fit."),
            ("fit_timestamp_seconds", "When the model's forecaster was last fitted (Unix seconds)."),
        )
        info = GaugeFamily("prewarm_forecaster_info", "Forecasting model selected for each model.", labels=["model", "forecaster"])
        for model, d in sorted(snap.decisions.items()):
            forecast = snap.forecasts.get(model)
            if forecast is not None and forecast.h:
                index = max(0, min(forecast.h - 1, int((d.at + d.lead_seconds - forecast.origin) // forecast.step_seconds)))
                at_lead.add_metric([model, "mean"], float(forecast.mean[index]))
                for q, path in sorted(forecast.quantiles.items()):
                    at_lead.add_metric([model, _stat(q)], float(path[index]))
            if d.forecast_peak is not None:
                g["forecast_peak_demand"].add_metric([model], d.forecast_peak)
            if model in snap.forecast_for_now:
                g["forecast_for_now_demand"].add_metric([model], snap.forecast_for_now[model])
            settings = snap.settings.model(model)
            if settings is not None:
                g["forecast_target_quantile"].add_metric([model], settings.policy.scale_quantile)
                g["forecast_max_skill"].add_metric([model], settings.policy.maxSkill)
        for model, fit in sorted(snap.fits.items()):
            if fit.skill is not None:
                g["forecast_skill_mase"].add_metric([model], fit.skill)
            g["forecast_demoted"].add_metric([model], 1.0 if fit.demoted else 0.0)
            g["fit_duration_seconds"].add_metric([model], fit.fit_seconds)
            g["fit_timestamp_seconds"].add_metric([model], fit.fitted_at)
            info.add_metric([model, fit.model_name], 1.0)
        yield at_lead
        yield from g.values()
        yield info

    def _accuracy(self, snap: Snapshot) -> Iterator[Family]:
        ratio = GaugeFamily("prewarm_forecast_coverage_ratio", "Rolling share of refreshes where actual demand stayed at or below the forecast made one lead time ago (target: prewarm_forecast_target_quantile).", labels=["model"])
        samples = GaugeFamily("prewarm_forecast_coverage_samples", "Refreshes behind prewarm_forecast_coverage_ratio (rolling window).", labels=["model"])
        for model in sorted(snap.decisions):
            coverage = self.accuracy.coverage(model)
            if coverage is not None:
                ratio.add_metric([model], coverage[0])
                samples.add_metric([model], coverage[1])
        window = GaugeFamily("prewarm_forecast_coverage_window_seconds", "Rolling window of prewarm_forecast_coverage_ratio.", value=self.accuracy.window_seconds)
        yield from (ratio, samples, window)

    def _slo(self, snap: Snapshot) -> Iterator[Family]:
        g = _gauges(
            ["model"],
            ("slo_on_time_ratio", "Measured share of requests that waited at most slo.maxQueueTime in vLLM's queue, over slo.window."),
            ("slo_requests", "Requests finished over slo.window behind prewarm_slo_on_time_ratio."),
            ("slo_target_ratio", "Target share of requests on time (slo.onTime)."),
            ("slo_margin", "Safety margin the decision holds the SLO with: demand provisioned for / expected demand, at least one replica's capacity (1 = none)."),
            ("slo_aim_ratio", "On-time share the margin tuner's replay aims at: slo.onTime + half the error budget in a calm week, + 0.95 of it while the week's budget is spent."),
        )
        for model, d in sorted(snap.decisions.items()):
            signals = getattr(snap.observations.get(model), "signals", {})
            settings = snap.settings.model(model)
            slo = settings.policy.slo if settings is not None else None
            measured = signals.get("slo_on_time_ratio")
            _add(g, [model], {
                # The live measurement first; the decision's copy when this refresh has none.
                "slo_on_time_ratio": measured if measured is not None else d.on_time,
                "slo_requests": signals.get("slo_requests"),
                "slo_target_ratio": d.slo_target if d.slo_target is not None else getattr(slo, "onTime", None),
                "slo_margin": d.margin,
                "slo_aim_ratio": d.slo_aim,
            })
        yield from g.values()

    def _cold_starts(self, snap: Snapshot) -> Iterator[Family]:
        g = GaugeFamily("prewarm_cold_start_seconds", "Cold start by stage (pod_startup: created -> Ready; node_provisioning: node created -> Ready) and stat (p90 sets the lead time).", labels=["model", "stage", "stat"])
        learned = GaugeFamily("prewarm_cold_start_learned", "1 when the cold start is learned from observed startups, 0 while the config's initial value is used.", labels=["model"])
        samples = GaugeFamily("prewarm_cold_start_samples", "Observed startups behind the learned cold start.", labels=["model"])
        for model, c in sorted(snap.cold_starts.items()):
            for stage in ("pod_startup", "node_provisioning"):
                g.add_metric([model, stage, "p90"], getattr(c, f"{stage}_seconds"))
            learned.add_metric([model], 1.0 if c.learned else 0.0)
            samples.add_metric([model], c.samples)
        yield from (g, learned, samples)

    def _node_prewarm(self, snap: Snapshot) -> Iterator[Family]:
        g = _gauges(
            ["pool"],
            ("balloon_gpus", "GPUs held or ordered by the pool's balloon pods (0 without the Kubernetes integration)."),
            ("balloon_max_gpus", "Configured maxBalloonGpus of the pool."),
            ("balloon_pending_pods", "Balloon pods waiting for a node (the autoscaler is adding one)."),
            ("balloon_oldest_pending_seconds", "Age of the oldest pending balloon pod (0 when none is pending)."),
            ("pool_forecast_gpus", "GPUs the pool's models' forecasts want ready within lead + node provisioning, beyond replicas ordered."),
        )
        status = self._pools() if self._pools is not None else {}
        settings = snap.settings
        for pool in sorted(settings.nodePools, key=lambda p: p.name):
            s = status.get(pool.name, PoolStatus())
            replicas, _ = pool_prewarm_replicas(pool, settings.models, snap.decisions)
            for name, value in (
                ("balloon_gpus", s.balloon_pods * pool.gpusPerReplica), ("balloon_max_gpus", pool.maxBalloonGpus),
                ("balloon_pending_pods", s.pending_pods), ("balloon_oldest_pending_seconds", s.oldest_pending_seconds),
                ("pool_forecast_gpus", replicas * pool.gpusPerReplica),
            ):
                g[name].add_metric([pool.name], float(value))
        yield from g.values()

    def _health(self, snap: Snapshot) -> Iterator[Family]:
        now = self._clock.now()
        age = GaugeFamily("prewarm_data_age_seconds", "Seconds since the model's last demand sample.", labels=["model"])
        stale_after = GaugeFamily("prewarm_stale_after_seconds", "Configured staleAfter: older data makes the decision invalid.", labels=["model"])
        for model in sorted(snap.decisions):
            obs = snap.observations.get(model)
            seen = obs.at if obs is not None and obs.demand is not None else self.accuracy.last_demand_at(model)
            if seen is not None:
                age.add_metric([model], max(0.0, now - seen))
            settings = snap.settings.model(model)
            if settings is not None:
                stale_after.add_metric([model], settings.policy.staleAfter)
        yield from (age, stale_after)
        c = self._counters()
        errors = CounterFamily("prewarm_source_errors", "Metrics source failures by reason.", labels=["reason"])
        for reason, n in sorted(({reason: 0 for reason in KNOWN_SOURCE_ERRORS} | dict(c.source_errors)).items()):
            errors.add_metric([reason], n)
        yield errors
        config = c.config or ReloadStats()
        for name, doc, value in (
            ("config_reloads", "Config reloads applied.", config.reloads_total),
            ("config_reload_errors", "Config reloads rejected (the last good config was kept).", config.errors_total),
            ("refreshes", "Refresh cycles completed.", c.refreshes),
            ("refits", "Refit cycles completed.", c.refits),
            ("fit_errors", "Forecaster fits that failed (the previous forecaster was kept).", c.fit_errors),
        ):
            yield CounterFamily(f"prewarm_{name}", doc, value=float(value))
        yield GaugeFamily("prewarm_last_refresh_duration_seconds", "Wall time of the last refresh (queries, decisions, publish).", value=c.last_refresh_seconds)
        yield GaugeFamily("prewarm_last_refit_duration_seconds", "Wall time of the last refit cycle (all models' fits).", value=c.last_refit_seconds)
        if c.config is not None:
            yield GaugeFamily("prewarm_config_last_reload_successful", "1 when the newest config seen was applied, 0 when it was rejected.", value=0.0 if c.config.last_error else 1.0)
        if c.last_source_success is not None:
            yield GaugeFamily("prewarm_source_last_success_timestamp_seconds", "Last successful read of the metrics source (Unix seconds).", value=float(c.last_source_success))
        yield GaugeFamily("prewarm_snapshot_timestamp_seconds", "When the served snapshot was built (Unix seconds).", value=snap.at)
        yield GaugeFamily("prewarm_snapshot_age_seconds", "Seconds since the served snapshot was built (the refresh loop keeps it under refreshInterval).", value=max(0.0, now - snap.at))
        info = GaugeFamily("prewarm_build_info", "prewarm version (always 1).", labels=["version"])
        info.add_metric([_version()], 1.0)
        yield info


def _version() -> str:
    try:
        return metadata.version("prewarm")
    except metadata.PackageNotFoundError:
        return "unknown"
