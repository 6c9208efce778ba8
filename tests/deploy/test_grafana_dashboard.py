"""deploy/grafana/prewarm.json: valid against Grafana's own schema, current with its generator, and
every panel's query returns data from a real Prometheus scraping a real `prewarm serve`.

The daemon runs on the demo's replayed synthetic trace (60x time, no Prometheus source or cluster
needed) with two models on one GPU pool, so per-model and per-pool panels both have series; KEDA's
polls come from a real gRPC client (including a poll for an unknown model: a non-OK code).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml

from scaler._pb import externalscaler_pb2 as pb
from scaler._pb import externalscaler_pb2_grpc as pb_grpc
from tests.support.process import ServeProcess, start_serve
from tests.support.promenv import PrometheusServer, free_port, http_json, wait_for

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "prewarm.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
MODELS = ("demo", "demo-small")
SUBSTITUTIONS = {"$model": "|".join(MODELS), "$__rate_interval": "30s"}

# The demo's embedded config (scaler/data/demo.yaml), with a second model and a GPU pool.
CONFIG = {
    "replay": {"trace": "synthetic", "speed": 60},
    "defaults": {"refreshInterval": "15s", "refitInterval": "30m", "history": "14d", "step": "5m",
                 "pollingInterval": "30s", "quantile": 0.9, "coldStart": {"initial": "10m"},
                 "scaleDown": {"stabilization": "10m"}, "staleAfter": "5m"},
    "models": [
        {"name": "demo", "capacityPerReplica": 60, "minReplicas": 1, "maxReplicas": 40, "standbyReplicas": 1,
         "nodePool": "gpu-h100", "slo": {"onTime": 0.99, "maxQueueTime": "1s"}},
        {"name": "demo-small", "capacityPerReplica": 120, "maxReplicas": 10, "nodePool": "gpu-h100"},
    ],
    "nodePools": [{"name": "gpu-h100", "gpusPerNode": 8, "gpusPerReplica": 1, "maxBalloonGpus": 16}],
}

EMPTY_WITHOUT = {
    "prewarm_current_replicas": "vLLM engines reporting come from the Prometheus source; the replay source has none",
    "prewarm_ready_replicas": "Ready pods of the target Deployment need the Kubernetes integration",
    "prewarm_pool_spare_gpus": "free GPU slots per pool are counted from Nodes and Pods (Kubernetes integration)",
    "prewarm_slo_on_time_ratio": "the on-time share is measured from vLLM's queue-time histogram by the Prometheus "
                                 "source; the replay source has none",
    "prewarm_source_request_latency_seconds": "query latency is the Prometheus source's; the replay source sends none",
    "prewarm_source_partial_models": "scrape targets per model are counted by the Prometheus source only",
}
"""Series a demo cannot have, by metric name, with the reason. Any other query must return data."""


def load() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["refId"], target["expr"]


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


# --- static checks -------------------------------------------------------------------------------


def test_generated_file_is_current() -> None:
    result = subprocess.run([sys.executable, str(GRAFANA / "dashboard.py"), "--check"], check=False)
    assert result.returncode == 0, "deploy/grafana/prewarm.json is stale: run python deploy/grafana/dashboard.py"


def test_valid_against_grafana_schema(dashboard_schema: Path) -> None:
    schema = json.loads(dashboard_schema.read_text())
    validator = jsonschema.Draft7Validator(schema)
    dashboard = load()
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(dashboard)]
    assert not errors, "\n".join(errors)
    # the schema has teeth: a panel without its grid position, or an unknown key, is refused
    broken = copy.deepcopy(dashboard)
    del broken["panels"][1]["gridPos"]["h"]
    broken["panels"][2]["gridpos"] = {}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_layout_and_variables() -> None:
    dashboard = load()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Forecast vs actual", "Replicas", "Forecast accuracy", "Cold start", "Node pre-warm",
                    "Data health"]
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "model"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
            assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    for _, _, expr in targets(dashboard):
        assert "prewarm_" in expr
        if re.search(r"prewarm_(demand|forecast|desired|cold_start|lead)", expr):
            assert 'model=~"$model"' in expr, expr


# --- every query against a real Prometheus scraping a real prewarm serve ------------------------------


def poll_keda(address: str, stop: threading.Event) -> None:
    """Poll like KEDA (GetMetricSpec, GetMetrics, IsActive) every 0.5 s, plus one unknown model."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        while not stop.is_set():
            for model in (*MODELS, "unknown-model"):
                ref = pb.ScaledObjectRef(name=f"vllm-{model}", namespace="llm", scalerMetadata={"model": model})
                try:
                    stub.GetMetricSpec(ref, timeout=2)
                    stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"prewarm-{model}"),
                                    timeout=2)
                    stub.IsActive(ref, timeout=2)
                except grpc.RpcError:
                    pass
            stop.wait(0.5)


class RulesPrometheus(PrometheusServer):
    """Scrapes prewarm (job "prewarm", every second) and evaluates the shipped rules every second."""

    def write_config(self) -> Path:
        path = super().write_config()
        config = json.loads(path.read_text())
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(RULES)]
        config["scrape_configs"][0]["job_name"] = "prewarm"
        path.write_text(json.dumps(config, indent=2))
        return path


@pytest.fixture(scope="module")
def scraped(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    began = time.monotonic()
    tmp = tmp_path_factory.mktemp("dashboard")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    serve: ServeProcess = start_serve(["--config", str(config)], tmp)
    stop = threading.Event()
    poller = threading.Thread(target=poll_keda, args=(serve.address, stop), daemon=True)
    poller.start()
    server = RulesPrometheus(prometheus_binary, tmp, [f"127.0.0.1:{serve.metrics_port}"], port=free_port())
    try:
        server.start()

        def ready() -> bool:
            needed = ("prewarm_forecast_coverage_ratio", "prewarm_forecast_for_now_demand", "prewarm_forecast_demand")
            return all(len(server.query(f"count by (model) ({name})")) == len(MODELS) for name in needed) \
                and bool(server.query("prewarm_grpc_requests_total"))

        wait_for(ready, timeout=150, what="forecast-vs-actual series for every model in Prometheus", interval=1)
        time.sleep(3)  # a few more scrapes, so every rate() window holds two samples or more
        print(f"\ndashboard env ready in {time.monotonic() - began:.1f}s")
        yield server
    finally:
        stop.set()
        poller.join(timeout=5)
        server.stop()
        code = serve.terminate()
        assert code == 0, serve.output()[-3000:]


def query_range(server: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    end = time.time()
    params = {"query": expr, "start": f"{end - 30:.3f}", "end": f"{end:.3f}", "step": "5"}
    answer = http_json(f"{server.url}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.mark.slow
@pytest.mark.prometheus
def test_every_panel_query_returns_data(scraped: PrometheusServer) -> None:
    empty, exempt = [], []
    for title, ref, expr in targets(load()):
        result = query_range(scraped, substitute(expr))
        metric = next((name for name in EMPTY_WITHOUT if name in expr), None)
        if metric is not None:
            exempt.append(f"{title}/{ref}: {EMPTY_WITHOUT[metric]}")
            continue
        if not result:
            empty.append(f"{title} [{ref}]: {expr}")
    assert not empty, "queries with no data:\n" + "\n".join(empty)
    assert len(exempt) == len(EMPTY_WITHOUT), exempt
    print("\nempty by design in the demo:\n  " + "\n  ".join(exempt))


@pytest.mark.slow
@pytest.mark.prometheus
def test_model_variable_lists_the_models(scraped: PrometheusServer) -> None:
    variable = next(v for v in load()["templating"]["list"] if v["name"] == "model")
    metric = re.fullmatch(r"label_values\((\w+), model\)", variable["query"])
    assert metric is not None
    answer = http_json(f"{scraped.url}/api/v1/label/model/values?match[]={metric.group(1)}")
    assert sorted(answer["data"]) == sorted(MODELS)


@pytest.mark.slow
@pytest.mark.prometheus
def test_alert_rules_evaluate_cleanly_on_real_series(scraped: PrometheusServer) -> None:
    """The shipped rules, loaded into the same Prometheus: every rule evaluates without error, and a
    healthy demo fires nothing but the GetMetrics alert's pending state for the unknown model."""
    def rules() -> list[dict[str, Any]]:
        groups = http_json(f"{scraped.url}/api/v1/rules")["data"]["groups"]
        return [r for g in groups for r in g["rules"]]

    wait_for(lambda: all(r["health"] != "unknown" for r in rules()), timeout=10, what="rules evaluated")
    loaded = rules()
    shipped = yaml.safe_load(RULES.read_text())
    assert len(loaded) == sum(len(g["rules"]) for g in shipped["groups"])
    bad = [f"{r['name']}: {r.get('lastError')}" for r in loaded if r["health"] != "ok"]
    assert not bad, bad
    firing = {a["labels"]["alertname"]: a["labels"] for r in loaded for a in r.get("alerts", [])}
    assert set(firing) <= {"PrewarmGetMetricsFailing"}, firing
    if firing:
        assert firing["PrewarmGetMetricsFailing"]["code"] == "NOT_FOUND"
