"""The /metrics collector on hand-built snapshots: values, names, and `promtool check metrics`."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from forecasting.types import Forecast
from scaler.core.clock import FakeClock
from scaler.core.model import ColdStart, Decision, Observation, Reason
from scaler.core.standby import PoolStatus
from scaler.edges import ReloadStats
from scaler.edges.keda.servicer import GrpcMetrics
from scaler.edges.metrics.collector import Counters, ForecastAccuracy, ForecastCollector
from scaler.edges.prometheus.collector import SourceCollector
from scaler.snapshot import FitInfo, Snapshot
from tests.support.harness import settings_from_yaml

T0 = 1_700_000_000.0
CONFIG = """
replay: {}
defaults: {quantile: 0.9, staleAfter: 5m, maxSkill: 0.95}
models:
  - {name: chat, capacityPerReplica: 10, minReplicas: 1, maxReplicas: 30, nodePool: gpu-a,
     slo: {onTime: 0.99, maxQueueTime: 1s}}
  - {name: code, capacityPerReplica: 5, maxReplicas: 8, nodePool: gpu-a}
nodePools:
  - {name: gpu-a, gpusPerNode: 8, gpusPerReplica: 2, maxBalloonGpus: 16}
  - {name: gpu-b, gpusPerNode: 4, maxBalloonGpus: 4}
"""
SETTINGS = settings_from_yaml(CONFIG)


def decision(model: str, at: float = T0, **kw: object) -> Decision:
    base: dict[str, object] = dict(model=model, at=at, replicas=4, reason=Reason.FORECAST, valid=True, active=True,
                                   standby=1, reactive_replicas=2, forecast_replicas=3, demand=25.0,
                                   forecast_peak=30.0, lead_seconds=600.0, prewarm_replicas=1)
    base.update(kw)
    return Decision(**base)  # type: ignore[arg-type]


def snapshot(generation: int = 1, at: float = T0, *, demand: float | None = 25.0, for_now: float | None = 28.0,
             **kw: object) -> Snapshot:
    forecast = Forecast(origin=at, step_seconds=300, mean=np.array([20.0, 21.0, 22.0, 23.0]),
                        quantiles={0.5: np.array([20.0, 21.0, 22.0, 23.0]), 0.9: np.array([25.0, 26.0, 27.0, 28.0])})
    fields: dict[str, object] = dict(
        at=at, generation=generation, settings=SETTINGS,
        decisions={"chat": decision("chat", at, slo_target=0.99, on_time=0.95, margin=1.3, slo_aim=0.995),
                   "code": decision("code", at, prewarm_replicas=2, reason=Reason.REACTIVE)},
        observations={"chat": Observation("chat", at, demand, replicas=3,
                                          signals={"slo_on_time_ratio": 0.97, "slo_requests": 1200.0}),
                      "code": Observation("code", at, 4.0)},
        ready_replicas={"code": 2},  # from the Kubernetes edge's cluster view
        forecasts={"chat": forecast},
        fits={"chat": FitInfo("ets_damped", 0.6, "", at - 60, 1.5, False),
              "code": FitInfo("seasonal_naive", 1.2, "", at - 60, 0.2, True)},
        cold_starts={"chat": ColdStart(420.0, 180.0, samples=5, learned=True), "code": ColdStart(300.0)},
        forecast_for_now={"chat": for_now} if for_now is not None else {},
    )
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


class Holder:
    def __init__(self, snap: Snapshot) -> None:
        self.current = snap


def registry_for(holder: Holder, clock: FakeClock, **kw: object) -> tuple[CollectorRegistry, ForecastCollector]:
    registry = CollectorRegistry()
    collector = ForecastCollector(lambda: holder.current, clock, **kw)  # type: ignore[arg-type]
    registry.register(collector)
    return registry, collector


def test_per_model_values() -> None:
    clock = FakeClock(T0 + 10)
    registry, _ = registry_for(Holder(snapshot()), clock)
    v = registry.get_sample_value
    assert v("prewarm_desired_replicas", {"model": "chat"}) == 4
    assert v("prewarm_current_replicas", {"model": "chat"}) == 3
    assert v("prewarm_ready_replicas", {"model": "chat"}) is None  # unknown: not exported as 0
    assert v("prewarm_ready_replicas", {"model": "code"}) == 2
    assert (v("prewarm_min_replicas", {"model": "chat"}), v("prewarm_max_replicas", {"model": "chat"})) == (1, 30)
    assert v("prewarm_demand", {"model": "chat"}) == 25
    assert v("prewarm_decision_reason", {"model": "chat", "reason": "forecast"}) == 1
    assert v("prewarm_decision_reason", {"model": "chat", "reason": "reactive"}) == 0
    # lead 600 s from origin T0 at 300 s steps: index 2
    assert v("prewarm_forecast_demand", {"model": "chat", "stat": "mean"}) == 22
    assert v("prewarm_forecast_demand", {"model": "chat", "stat": "p90"}) == 27
    assert v("prewarm_forecast_demand", {"model": "chat", "stat": "p50"}) == 22
    assert v("prewarm_forecast_peak_demand", {"model": "chat"}) == 30
    assert v("prewarm_forecast_for_now_demand", {"model": "chat"}) == 28
    assert v("prewarm_forecast_target_quantile", {"model": "chat"}) == 0.9
    assert v("prewarm_forecast_max_skill", {"model": "code"}) == 0.95
    assert v("prewarm_forecast_skill_mase", {"model": "code"}) == 1.2
    assert v("prewarm_forecast_demoted", {"model": "code"}) == 1
    assert v("prewarm_fit_duration_seconds", {"model": "chat"}) == 1.5
    assert v("prewarm_forecaster_info", {"model": "chat", "forecaster": "ets_damped"}) == 1
    assert v("prewarm_cold_start_seconds", {"model": "chat", "stage": "pod_startup", "stat": "p90"}) == 420
    assert v("prewarm_cold_start_seconds", {"model": "chat", "stage": "node_provisioning", "stat": "p90"}) == 180
    assert v("prewarm_cold_start_learned", {"model": "code"}) == 0
    assert v("prewarm_cold_start_samples", {"model": "chat"}) == 5
    assert v("prewarm_data_age_seconds", {"model": "chat"}) == 10
    assert v("prewarm_stale_after_seconds", {"model": "chat"}) == 300
    assert v("prewarm_snapshot_age_seconds") == 10
    assert v("prewarm_lead_time_seconds", {"model": "chat"}) == 600


def test_slo_series() -> None:
    registry, _ = registry_for(Holder(snapshot()), FakeClock(T0))
    v = registry.get_sample_value
    assert v("prewarm_slo_on_time_ratio", {"model": "chat"}) == 0.97  # the live reading, not the decision's
    assert v("prewarm_slo_requests", {"model": "chat"}) == 1200
    assert v("prewarm_slo_target_ratio", {"model": "chat"}) == 0.99
    assert v("prewarm_slo_margin", {"model": "chat"}) == 1.3
    assert v("prewarm_slo_aim_ratio", {"model": "chat"}) == 0.995
    for name in ("on_time_ratio", "requests", "target_ratio", "margin", "aim_ratio"):
        assert v(f"prewarm_slo_{name}", {"model": "code"}) is None  # no slo: nothing, not 0


def test_slo_series_fall_back_to_the_decision_then_the_settings() -> None:
    snap = snapshot(decisions={"chat": decision("chat", on_time=0.95)},
                    observations={"chat": Observation("chat", T0, 25.0)})
    registry, _ = registry_for(Holder(snap), FakeClock(T0))
    v = registry.get_sample_value
    assert v("prewarm_slo_on_time_ratio", {"model": "chat"}) == 0.95
    assert v("prewarm_slo_target_ratio", {"model": "chat"}) == 0.99
    assert v("prewarm_slo_requests", {"model": "chat"}) is None
    assert v("prewarm_slo_margin", {"model": "chat"}) is None  # not tuned yet: unknown
    assert v("prewarm_slo_aim_ratio", {"model": "chat"}) is None


def test_pools_without_kubernetes_are_zero_balloons() -> None:
    registry, _ = registry_for(Holder(snapshot()), FakeClock(T0))
    v = registry.get_sample_value
    for pool in ("gpu-a", "gpu-b"):
        assert v("prewarm_balloon_gpus", {"pool": pool}) == 0
        assert v("prewarm_balloon_pending_pods", {"pool": pool}) == 0
    assert v("prewarm_balloon_max_gpus", {"pool": "gpu-a"}) == 16
    # chat +1 and code +2 replicas forecast beyond ordered, 2 GPUs each: 6 GPUs
    assert v("prewarm_pool_forecast_gpus", {"pool": "gpu-a"}) == 6
    assert v("prewarm_pool_forecast_gpus", {"pool": "gpu-b"}) == 0


def test_pools_from_kubernetes_status() -> None:
    status = {"gpu-a": PoolStatus(balloon_pods=3, pending_pods=1, oldest_pending_seconds=95.0)}
    registry, _ = registry_for(Holder(snapshot()), FakeClock(T0), pools=lambda: status)
    v = registry.get_sample_value
    assert v("prewarm_balloon_gpus", {"pool": "gpu-a"}) == 6
    assert v("prewarm_balloon_pending_pods", {"pool": "gpu-a"}) == 1
    assert v("prewarm_balloon_oldest_pending_seconds", {"pool": "gpu-a"}) == 95
    assert v("prewarm_balloon_gpus", {"pool": "gpu-b"}) == 0


def test_counters_and_known_source_errors_start_at_zero() -> None:
    counters = Counters(source_errors={"timeout": 3}, refreshes=7, last_source_success=T0,
                        config=ReloadStats(errors_total=1, last_error="bad"))
    registry, _ = registry_for(Holder(snapshot()), FakeClock(T0), counters=lambda: counters)
    v = registry.get_sample_value
    assert v("prewarm_source_errors_total", {"reason": "timeout"}) == 3
    assert v("prewarm_source_errors_total", {"reason": "unreachable"}) == 0
    assert v("prewarm_refreshes_total") == 7
    assert v("prewarm_config_reload_errors_total") == 1
    assert v("prewarm_config_last_reload_successful") == 0
    assert v("prewarm_source_last_success_timestamp_seconds") == T0


def test_config_reload_status_absent_when_unknown() -> None:
    registry, _ = registry_for(Holder(snapshot()), FakeClock(T0))
    assert registry.get_sample_value("prewarm_config_last_reload_successful") is None
    assert registry.get_sample_value("prewarm_config_reload_errors_total") == 0


@pytest.mark.parametrize(("demands", "forecasts", "expected"), [
    pytest.param([10, 20, 30, 40], [25, 25, 25, 25], (0.5, 4), id="half-covered"),
    pytest.param([10, 10], [10, 10], (1.0, 2), id="equal-counts-as-covered"),
    pytest.param([50], [40], (0.0, 1), id="under-forecast"),
])
def test_coverage_counts_each_snapshot_once(demands: list[float], forecasts: list[float],
                                            expected: tuple[float, int]) -> None:
    holder = Holder(snapshot())
    registry, _ = registry_for(holder, FakeClock(T0))
    for k, (d, f) in enumerate(zip(demands, forecasts, strict=True)):
        holder.current = snapshot(generation=k + 1, at=T0 + 15 * k, demand=d, for_now=f)
        registry.get_sample_value("prewarm_demand", {"model": "chat"})
        registry.get_sample_value("prewarm_demand", {"model": "chat"})  # a second scrape: same generation
    v = registry.get_sample_value
    assert (v("prewarm_forecast_coverage_ratio", {"model": "chat"}),
            v("prewarm_forecast_coverage_samples", {"model": "chat"})) == expected
    assert v("prewarm_forecast_coverage_ratio", {"model": "code"}) is None  # no forecast for now


def test_coverage_window_rolls() -> None:
    accuracy = ForecastAccuracy(window_seconds=3600)
    accuracy.observe(snapshot(1, T0, demand=50, for_now=40))  # missed
    accuracy.observe(snapshot(2, T0 + 1800, demand=10, for_now=40))  # covered
    assert accuracy.coverage("chat") == (0.5, 2)
    accuracy.observe(snapshot(3, T0 + 4000, demand=10, for_now=40))  # the first bucket left the window
    assert accuracy.coverage("chat") == (1.0, 2)


def test_data_age_survives_missing_observation() -> None:
    holder = Holder(snapshot())
    clock = FakeClock(T0)
    registry, _ = registry_for(holder, clock)
    registry.get_sample_value("prewarm_demand", {"model": "chat"})
    holder.current = snapshot(generation=2, at=T0 + 60, observations={})  # source down
    clock.set(T0 + 90)
    assert registry.get_sample_value("prewarm_data_age_seconds", {"model": "chat"}) == 90


def test_removed_model_disappears() -> None:
    holder = Holder(snapshot())
    registry, _ = registry_for(holder, FakeClock(T0))
    assert registry.get_sample_value("prewarm_desired_replicas", {"model": "code"}) == 4
    holder.current = snapshot(generation=2, decisions={"chat": decision("chat")})
    assert registry.get_sample_value("prewarm_desired_replicas", {"model": "code"}) is None
    assert registry.get_sample_value("prewarm_forecast_coverage_ratio", {"model": "code"}) is None


class IoSource:
    """The counters a PrometheusSource keeps, without a Prometheus."""

    requests_total = {"instant": 12, "range": 4}  # noqa: RUF012
    request_seconds_total = {"instant": 0.5, "range": 0.2}  # noqa: RUF012
    rejected_samples_total = {"nan": 2, "stale": 0}  # noqa: RUF012
    retries_total = 3
    latency_buckets: dict[str, list[int]] = {}  # noqa: RUF012
    partial_models = 0


def test_source_io_counters() -> None:
    registry = CollectorRegistry()
    registry.register(SourceCollector(lambda: IoSource()))  # type: ignore[arg-type, return-value]
    v = registry.get_sample_value
    assert v("prewarm_source_requests_total", {"kind": "instant"}) == 12
    assert v("prewarm_source_request_duration_seconds_total", {"kind": "range"}) == 0.2
    assert v("prewarm_source_rejected_samples_total", {"reason": "nan"}) == 2
    assert v("prewarm_source_retries_total") == 3
    bare, _ = registry_for(Holder(snapshot()), FakeClock(T0))
    assert bare.get_sample_value("prewarm_source_retries_total") is None  # replay source: no I/O


def exposition() -> bytes:
    registry = CollectorRegistry()
    metrics = GrpcMetrics()
    registry.register(metrics)
    registry.register(SourceCollector(lambda: IoSource()))  # type: ignore[arg-type, return-value]
    metrics.requests.labels("GetMetrics", "OK").inc()
    metrics.seconds.labels("GetMetrics").observe(0.002)
    counters = Counters(source_errors={"timeout": 1}, last_source_success=T0, config=ReloadStats())
    status = {"gpu-a": PoolStatus(balloon_pods=2)}
    collector = ForecastCollector(lambda: snapshot(), FakeClock(T0), counters=lambda: counters, pools=lambda: status)
    registry.register(collector)
    return generate_latest(registry)


def test_promtool_check_metrics_is_clean() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("promtool missing in CI (scripts/prometheus-env.sh installs it)")
        pytest.skip("promtool not installed: run scripts/prometheus-env.sh install")
    text = exposition()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert b"prewarm_forecast_demand{model=\"chat\",stat=\"p90\"}" in text
    assert b"prewarm_slo_margin{model=\"chat\"} 1.3" in text


def test_fast_text_is_what_prometheus_client_would_write() -> None:
    """/metrics renders the collector's families itself (speed): byte for byte the same text."""
    from prometheus_client import generate_latest

    snap = snapshot(observations={"chat": Observation("chat", T0, 25.0, replicas=3,
                                                      signals={"slo_on_time_ratio": 0.97})})
    registry, collector = registry_for(Holder(snap), FakeClock(T0 + 5), counters=lambda: Counters(
        source_errors={"timeout": 2}, config=ReloadStats(errors_total=1, last_error="bad")))
    expected = generate_latest(registry).decode()
    collector.accuracy = ForecastAccuracy()  # a fresh window: the same generation seen once again
    assert collector.render() == expected
