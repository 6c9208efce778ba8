"""/metrics: forecast vs actual, decisions, cold starts and health, read from the snapshot at scrape time.

A custom collector (not global gauges): each scrape reads the current immutable snapshot, so a
model removed from the config disappears from /metrics at once and nothing is ever half-updated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.core.clock import Clock
from scaler.core.model import Reason
from scaler.snapshot import Snapshot


class ForecastCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        clock: Clock,
        *,
        counters: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._clock = clock
        self._counters = counters or (dict)

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from self._decisions(snap)
        yield from self._forecasts(snap)
        yield from self._cold_starts(snap)
        yield from self._health(snap)

    def _decisions(self, snap: Snapshot) -> Iterator[Metric]:
        g = {name: GaugeMetricFamily(f"prewarm_{name}", doc, labels=["model"]) for name, doc in (
            ("desired_replicas", "Replicas prewarm asks KEDA for (GetMetrics)."),
            ("reactive_replicas", "Replicas current demand alone needs (the reactive floor)."),
            ("forecast_replicas", "Replicas the forecast's upper quantile needs over the lead window."),
            ("standby_replicas", "Standby replicas included in desired replicas."),
            ("prewarm_replicas", "Extra replicas forecast within lead + node provisioning (GPU nodes pre-warmed)."),
            ("current_replicas", "Replicas serving now, as seen by the metrics source."),
            ("demand", "Current demand in the model's demand unit."),
            ("decision_valid", "1 when the decision rests on fresh data; 0 makes GetMetrics fail UNAVAILABLE."),
            ("active", "IsActive answer (1 active)."),
            ("lead_time_seconds", "Forecast lead time: cold start p90 + node provisioning + decision delay."),
            ("decision_timestamp_seconds", "When the current decision was made (Unix seconds)."),
        )}
        reason = GaugeMetricFamily("prewarm_decision_reason", "Why the decision has its replica count (1 for the current reason).", labels=["model", "reason"])
        for model, d in sorted(snap.decisions.items()):
            values = {
                "desired_replicas": d.replicas, "reactive_replicas": d.reactive_replicas,
                "forecast_replicas": d.forecast_replicas, "standby_replicas": d.standby,
                "prewarm_replicas": d.prewarm_replicas, "demand": d.demand,
                "decision_valid": 1.0 if d.valid else 0.0, "active": 1.0 if d.active else 0.0,
                "lead_time_seconds": d.lead_seconds, "decision_timestamp_seconds": d.at,
                "current_replicas": getattr(snap.observations.get(model), "replicas", None),
            }
            for name, value in values.items():
                if value is not None:
                    g[name].add_metric([model], float(value))
            for r in Reason:
                reason.add_metric([model, r.value], 1.0 if d.reason is r else 0.0)
        yield from g.values()
        yield reason

    def _forecasts(self, snap: Snapshot) -> Iterator[Metric]:
        peak = GaugeMetricFamily("prewarm_forecast_demand", "Forecast demand at the lead horizon, by quantile ('mean' for the mean).", labels=["model", "quantile"])
        for_now = GaugeMetricFamily("prewarm_forecast_for_now_demand", "Upper-quantile forecast made one lead time ago for now: plot beside prewarm_demand.", labels=["model"])
        skill = GaugeMetricFamily("prewarm_forecast_skill_mase", "Forecast MASE vs seasonal naive on recent data (< 1 beats naive).", labels=["model"])
        demoted = GaugeMetricFamily("prewarm_forecast_demoted", "1 when the model is scaled reactively because its forecast has no skill.", labels=["model"])
        fit_seconds = GaugeMetricFamily("prewarm_fit_duration_seconds", "Duration of the model's last forecaster fit.", labels=["model"])
        info = GaugeMetricFamily("prewarm_forecaster_info", "Forecasting model selected for each model.", labels=["model", "forecaster"])
        for model, d in sorted(snap.decisions.items()):
            forecast = snap.forecasts.get(model)
            if forecast is not None and forecast.h:
                index = max(0, min(forecast.h - 1, int((d.at + d.lead_seconds - forecast.origin) // forecast.step_seconds)))
                peak.add_metric([model, "mean"], float(forecast.mean[index]))
                for q, path in sorted(forecast.quantiles.items()):
                    peak.add_metric([model, f"{q:g}"], float(path[index]))
            if model in snap.forecast_for_now:
                for_now.add_metric([model], snap.forecast_for_now[model])
        for model, fit in sorted(snap.fits.items()):
            if fit.skill is not None:
                skill.add_metric([model], fit.skill)
            demoted.add_metric([model], 1.0 if fit.demoted else 0.0)
            fit_seconds.add_metric([model], fit.fit_seconds)
            info.add_metric([model, fit.model_name], 1.0)
        yield from (peak, for_now, skill, demoted, fit_seconds, info)

    def _cold_starts(self, snap: Snapshot) -> Iterator[Metric]:
        g = GaugeMetricFamily("prewarm_cold_start_seconds", "Cold start p90 by stage (pod_startup, node_provisioning).", labels=["model", "stage"])
        learned = GaugeMetricFamily("prewarm_cold_start_learned", "1 when the cold start is learned from observed startups, 0 while the config's initial value is used.", labels=["model"])
        for model, c in sorted(snap.cold_starts.items()):
            g.add_metric([model, "pod_startup"], c.pod_startup_seconds)
            g.add_metric([model, "node_provisioning"], c.node_provisioning_seconds)
            learned.add_metric([model], 1.0 if c.learned else 0.0)
        yield from (g, learned)

    def _health(self, snap: Snapshot) -> Iterator[Metric]:
        now = self._clock.now()
        age = GaugeMetricFamily("prewarm_data_age_seconds", "Seconds since the model's last demand sample.", labels=["model"])
        for model, obs in sorted(snap.observations.items()):
            if obs.demand is not None:
                age.add_metric([model], max(0.0, now - obs.at))
        yield age
        counters = self._counters()
        errors = CounterMetricFamily("prewarm_source_errors", "Metrics source failures by reason.", labels=["reason"])
        for reason, n in sorted(counters.get("source_errors", {}).items()):
            errors.add_metric([reason], n)
        yield errors
        for name, doc in (
            ("config_reloads", "Config reloads applied."),
            ("config_reload_errors", "Config reloads rejected (the last good config was kept)."),
            ("refreshes", "Refresh cycles completed."),
            ("refits", "Refit cycles completed."),
            ("fit_errors", "Forecaster fits that failed (the previous forecaster was kept)."),
        ):
            c = CounterMetricFamily(f"prewarm_{name}", doc)
            c.add_metric([], float(counters.get(name, 0)))
            yield c
        last = counters.get("last_source_success")
        if last is not None:
            yield GaugeMetricFamily("prewarm_source_last_success_timestamp_seconds", "Last successful read of the metrics source (Unix seconds).", value=float(last))
        yield GaugeMetricFamily("prewarm_snapshot_timestamp_seconds", "When the served snapshot was built (Unix seconds).", value=snap.at)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)
