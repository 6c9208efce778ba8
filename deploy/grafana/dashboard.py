"""Generates deploy/grafana/prewarm.json, the SRE dashboard (run: python deploy/grafana/dashboard.py).

One table of panels below is the source: each panel's title, description and PromQL live together,
and tests/deploy check the generated JSON against Grafana's own schema and run every query
against a real Prometheus scraping a real `prewarm serve`. Every replica exports the same
per-model series, so queries aggregate `by (model)` (or `by (pool)`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("prewarm.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
M = 'model=~"$model"'
UID = "prewarm-forecast"

# (row, [(title, description, type, width, unit, [(expr, legend)], options)])
Target = tuple[str, str]
PanelSpec = tuple[str, str, str, int, str, list[Target], dict[str, Any]]
LAYOUT: list[tuple[str, list[PanelSpec]]] = [
    ("Forecast vs actual", [
        ("Demand: actual vs forecast made one lead time ago",
         "Actual demand beside the upper-quantile forecast that was made one lead time ago for this moment. "
         "The forecast line should sit just above actual (about `quantile` of the time): far above wastes "
         "GPUs, below means scale-ups come late.",
         "timeseries", 12, "short",
         [(f"max by (model) (prewarm_demand{{{M}}})", "{{model}} actual"),
          (f"max by (model) (prewarm_forecast_for_now_demand{{{M}}})", "{{model}} forecast made one lead time ago")],
         {}),
        ("SLO: on-time share vs target",
         "Share of requests that waited at most slo.maxQueueTime in vLLM's queue over slo.window, measured from "
         "vLLM's queue-time histogram, against slo.onTime. Models without an slo have no lines. Below target for "
         "30m alerts (PrewarmSloBelowTarget).",
         "timeseries", 12, "percentunit",
         [(f"max by (model) (prewarm_slo_on_time_ratio{{{M}}})", "{{model}} on time"),
          (f"max by (model) (prewarm_slo_target_ratio{{{M}}})", "{{model}} target"),
          (f"max by (model) (prewarm_slo_aim_ratio{{{M}}})", "{{model}} tuner's aim")],
         {}),
        ("Forecast at the lead horizon",
         "What the forecast says for now + lead time: mean and quantiles, and the upper-quantile peak over "
         "the whole lead window (what the decision scales to).",
         "timeseries", 8, "short",
         [(f"max by (model, stat) (prewarm_forecast_demand{{{M}}})", "{{model}} {{stat}}"),
          (f"max by (model) (prewarm_forecast_peak_demand{{{M}}})", "{{model}} peak over the lead window")],
         {}),
        ("Lead time",
         "How far ahead prewarm scales: learned cold start p90 + node provisioning (when no spare GPU) "
         "+ decision delay.",
         "timeseries", 8, "s",
         [(f"max by (model) (prewarm_lead_time_seconds{{{M}}})", "{{model}}")],
         {}),
        ("SLO margin",
         "The safety margin prewarm chose to hold the SLO at the least GPU cost: demand provisioned for over "
         "expected demand (1 = none). Re-chosen daily from the model's replayed history, and hourly while the "
         "week's measured share has spent 70 % of its error budget.",
         "timeseries", 8, "short",
         [(f"max by (model) (prewarm_slo_margin{{{M}}})", "{{model}} margin")],
         {}),
    ]),
    ("Replicas", [
        ("Replicas: desired, current, ready, standby",
         "desired: what prewarm answers KEDA. current: vLLM engines reporting (Prometheus source). ready: "
         "Ready pods of the target Deployment (Kubernetes integration). standby: included in desired.",
         "timeseries", 12, "short",
         [(f"max by (model) (prewarm_desired_replicas{{{M}}})", "{{model}} desired"),
          (f"max by (model) (prewarm_current_replicas{{{M}}})", "{{model}} current"),
          (f"max by (model) (prewarm_ready_replicas{{{M}}})", "{{model}} ready"),
          (f"max by (model) (prewarm_standby_replicas{{{M}}})", "{{model}} standby")],
         {}),
        ("What sets the count: reactive floor vs forecast",
         "reactive: current demand / capacityPerReplica. forecast: the forecast's upper quantile over the lead "
         "window. prewarm: extra replicas forecast within lead + node provisioning (their GPUs are pre-warmed).",
         "timeseries", 12, "short",
         [(f"max by (model) (prewarm_reactive_replicas{{{M}}})", "{{model}} reactive"),
          (f"max by (model) (prewarm_forecast_replicas{{{M}}})", "{{model}} forecast"),
          (f"max by (model) (prewarm_prewarm_replicas{{{M}}})", "{{model}} pre-warm")],
         {}),
        ("Decision reason",
         "Why the answer has its count: reactive, forecast, stabilization (scale-down held), min, max, idle, "
         "hold (data missing, last decision held), no_data (GetMetrics fails, KEDA fallback).",
         "state-timeline", 24, "short",
         [(f"max by (model, reason) (prewarm_decision_reason{{{M}}}) == 1", "{{model}} {{reason}}")],
         {"options": {"showValue": "never", "mergeValues": True}}),
    ]),
    ("Forecast accuracy", [
        ("Skill: MASE vs seasonal naive",
         "Mean absolute scaled error against seasonal naive on the recent holdout, recomputed at every refit. "
         "Below 1 the forecast beats 'same as last day/week'; at maxSkill the model is demoted to reactive.",
         "timeseries", 8, "short",
         [(f"max by (model) (prewarm_forecast_skill_mase{{{M}}})", "{{model}} MASE"),
          (f"max by (model) (prewarm_forecast_max_skill{{{M}}})", "{{model}} maxSkill (demotion)")],
         {}),
        ("Coverage of the forecast made one lead time ago",
         "Rolling share of refreshes where actual demand stayed at or below the forecast made one lead time "
         "ago. It should sit near the target quantile: lower under-predicts, much higher over-provisions.",
         "timeseries", 8, "percentunit",
         [(f"max by (model) (prewarm_forecast_coverage_ratio{{{M}}})", "{{model}} coverage"),
          (f"max by (model) (prewarm_forecast_target_quantile{{{M}}})", "{{model}} target")],
         {}),
        ("Forecast error: actual - forecast made one lead time ago",
         "Positive: demand above the forecast (under-prediction, scale-ups rely on the reactive floor).",
         "timeseries", 8, "short",
         [(f"max by (model) (prewarm_demand{{{M}}}) - max by (model) (prewarm_forecast_for_now_demand{{{M}}})",
           "{{model}}")],
         {}),
        ("Demoted to reactive",
         "1: the forecast has no skill; the model is scaled on current demand only.",
         "stat", 12, "short",
         [(f"max by (model) (prewarm_forecast_demoted{{{M}}})", "{{model}}")],
         {"mappings": [{"type": "value", "options": {"0": {"text": "forecast", "color": "green"},
                                                       "1": {"text": "demoted", "color": "red"}}}]}),
        ("Forecaster in use",
         "The forecasting model selected at the last refit, and how long the fit took.",
         "timeseries", 12, "s",
         [(f"max by (model) (prewarm_fit_duration_seconds{{{M}}}) * on (model) group_left (forecaster) "
           f"max by (model, forecaster) (prewarm_forecaster_info{{{M}}})", "{{model}} {{forecaster}} fit time")],
         {}),
    ]),
    ("Cold start", [
        ("Cold start by stage",
         "pod_startup: created -> Ready without node wait (image pull, weights, warm-up). node_provisioning: "
         "node created -> Ready in the model's pool. The p90 sets the lead time.",
         "timeseries", 12, "s",
         [(f"max by (model, stage, stat) (prewarm_cold_start_seconds{{{M}}})", "{{model}} {{stage}} {{stat}}")],
         {}),
        ("Cold start learned from observed startups",
         "Startups observed per model; learned 0 means the config's coldStart.initial is in use.",
         "timeseries", 12, "short",
         [(f"max by (model) (prewarm_cold_start_samples{{{M}}})", "{{model}} samples"),
          (f"max by (model) (prewarm_cold_start_learned{{{M}}})", "{{model}} learned")],
         {}),
    ]),
    ("Node pre-warm", [
        ("GPUs per pool: forecast headroom vs balloons",
         "forecast: GPUs the pool's models will need within lead + node provisioning beyond replicas ordered. "
         "balloons: GPUs held by balloon pods (0 without the Kubernetes integration). spare: GPU slots a new "
         "replica could take now (Kubernetes integration).",
         "timeseries", 12, "short",
         [("max by (pool) (prewarm_pool_forecast_gpus)", "{{pool}} forecast"),
          ("max by (pool) (prewarm_balloon_gpus)", "{{pool}} balloons"),
          ("max by (pool) (prewarm_balloon_max_gpus)", "{{pool}} maxBalloonGpus"),
          ("max by (pool) (prewarm_pool_spare_gpus)", "{{pool}} spare")],
         {}),
        ("Pending balloons",
         "Balloon pods waiting for a node, and the oldest one's wait: the autoscaler is adding nodes. "
         "Waits over 15 minutes alert (PrewarmBalloonsPendingTooLong).",
         "timeseries", 12, "short",
         [("max by (pool) (prewarm_balloon_pending_pods)", "{{pool}} pending pods"),
          ("max by (pool) (prewarm_balloon_oldest_pending_seconds) / 60", "{{pool}} oldest wait (min)")],
         {}),
    ]),
    ("Data health", [
        ("Data age vs staleAfter",
         "Seconds since the last demand sample. Above staleAfter the decision is invalid and KEDA's fallback "
         "applies.",
         "timeseries", 8, "s",
         [(f"max by (model) (prewarm_data_age_seconds{{{M}}})", "{{model}} age"),
          (f"max by (model) (prewarm_stale_after_seconds{{{M}}})", "{{model}} staleAfter")],
         {}),
        ("Decision valid",
         "0: no usable data for longer than staleAfter; GetMetrics answers UNAVAILABLE.",
         "timeseries", 8, "short",
         [(f"min by (model) (prewarm_decision_valid{{{M}}})", "{{model}}")],
         {}),
        ("Metrics source errors",
         "Failed reads of vLLM metrics by reason (per second).",
         "timeseries", 8, "reqps",
         [("sum by (reason) (rate(prewarm_source_errors_total[$__rate_interval]))", "{{reason}}")],
         {}),
        ("Refresh and refit",
         "Refreshes and refits per second per replica, fit errors, and the served snapshot's age.",
         "timeseries", 8, "short",
         [("sum by (instance) (rate(prewarm_refreshes_total[$__rate_interval]))", "{{instance}} refreshes/s"),
          ("sum by (instance) (rate(prewarm_fit_errors_total[$__rate_interval]))", "{{instance}} fit errors/s"),
          ("max by (instance) (prewarm_snapshot_age_seconds)", "{{instance}} snapshot age (s)")],
         {}),
        ("Config reloads",
         "Applied and rejected config.yaml changes (last hour). A rejected change keeps the last good config.",
         "timeseries", 8, "short",
         [("sum by (instance) (increase(prewarm_config_reloads_total[1h]))", "{{instance}} applied"),
          ("sum by (instance) (increase(prewarm_config_reload_errors_total[1h]))", "{{instance}} rejected")],
         {}),
        ("Replicas of prewarm",
         "prewarm pods scraped, by version.",
         "timeseries", 8, "short",
         [("count by (version) (prewarm_build_info)", "{{version}}")],
         {}),
        ("Metrics source latency p99",
         "Time one Prometheus query takes (every attempt), by kind. A refresh sends its queries four at a time; "
         "decisions stay valid for staleAfter from the scrape time.",
         "timeseries", 8, "s",
         [("histogram_quantile(0.99, sum by (le, kind) "
           "(rate(prewarm_source_request_latency_seconds_bucket[$__rate_interval])))", "{{kind}} p99")],
         {}),
        ("Daemon faults",
         "Fit pools replaced after a worker died (OOM killer), background tasks that raised, and models whose "
         "scrape targets dropped out (their decisions hold).",
         "timeseries", 8, "short",
         [("sum by (instance) (increase(prewarm_fit_pool_restarts_total[1h]))", "{{instance}} fit pool restarts (1h)"),
          ("sum by (instance, task) (increase(prewarm_task_failures_total[1h]))",
           "{{instance}} {{task}} failures (1h)"),
          ("max by (instance) (prewarm_source_partial_models)", "{{instance}} partial models")],
         {}),
        ("gRPC requests by method and code",
         "KEDA's calls per second. GetMetrics other than OK: UNAVAILABLE (no data, fallback), NOT_FOUND "
         "(unknown model in a ScaledObject), INVALID_ARGUMENT (bad override).",
         "timeseries", 12, "reqps",
         [("sum by (method, code) (rate(prewarm_grpc_requests_total[$__rate_interval]))", "{{method}} {{code}}")],
         {}),
        ("gRPC latency p99 by method",
         "Time to answer an RPC (streams: time to the first message). KEDA gives GetMetrics + IsActive 3 s "
         "together.",
         "timeseries", 12, "s",
         [("histogram_quantile(0.99, sum by (le, method) "
           "(rate(prewarm_grpc_request_duration_seconds_bucket[$__rate_interval])))", "{{method}} p99")],
         {}),
    ]),
]


def panel(pid: int, spec: PanelSpec, x: int, y: int, height: int) -> dict[str, Any]:
    title, description, kind, width, unit, targets, extra = spec
    defaults: dict[str, Any] = {"unit": unit}
    if "mappings" in extra:
        defaults["mappings"] = extra["mappings"]
    out: dict[str, Any] = {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": width, "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": extra.get("options", {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                                         "tooltip": {"mode": "multi", "sort": "desc"}}),
        "targets": [{"refId": chr(ord("A") + k), "datasource": DS, "expr": expr, "legendFormat": legend,
                     "range": True, "instant": False}
                    for k, (expr, legend) in enumerate(targets)],
    }
    return out


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, specs in LAYOUT:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        pid, y, x = pid + 1, y + 1, 0
        for spec in specs:
            width = spec[3]
            if x + width > 24:
                x, y = 0, y + 8
            panels.append(panel(pid, spec, x, y, 8))
            pid, x = pid + 1, x + width
        y += 8
    return {
        "uid": UID, "title": "prewarm: forecast vs actual", "schemaVersion": 39, "version": 1,
        "description": "prewarm, the predictive KEDA scaler for vLLM: forecast vs actual per model, replicas, "
                       "accuracy, cold starts, node pre-warm and data health. See docs/OPERATIONS.md.",
        "tags": ["prewarm", "keda", "vllm", "autoscaling"], "editable": True, "graphTooltip": 1,
        "time": {"from": "now-24h", "to": "now"}, "refresh": "30s", "timezone": "browser",
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0},
            {"name": "model", "label": "Model", "type": "query", "datasource": DS,
             "query": "label_values(prewarm_desired_replicas, model)", "refresh": 2, "sort": 1,
             "multi": True, "includeAll": True, "allValue": ".*",
             "current": {"text": "All", "value": "$__all"}, "hide": 0},
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.read_text() == render() else 1)
    OUT.write_text(render())
    print(f"wrote {OUT}")
