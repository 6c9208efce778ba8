"""`prewarm explain` against a real `prewarm serve` process, and from a config alone."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from scaler._pb import externalscaler_pb2 as pb
from scaler._pb import externalscaler_pb2_grpc as pb_grpc
from tests.e2e.test_serve_process import config_text, write_trace
from tests.support.process import ROOT, start_serve

pytestmark = pytest.mark.slow


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scaler", "explain", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def get_metrics(address: str) -> float:
    with grpc.insecure_channel(address) as channel:
        answer = pb_grpc.ExternalScalerStub(channel).GetMetrics(pb.GetMetricsRequest(
            scaledObjectRef=pb.ScaledObjectRef(scalerMetadata={"model": "llama"}), metricName="prewarm-llama"),
            timeout=5)
    return answer.metricValues[0].metricValueFloat


@pytest.fixture
def config(tmp_path: Path) -> Path:
    trace = write_trace(tmp_path / "trace.csv", 1200)  # 120 requests/min at 50 per replica: 3
    path = tmp_path / "config.yaml"
    path.write_text(config_text(trace))
    return path


def test_explain_reads_the_running_daemon(config: Path, tmp_path: Path) -> None:
    server = start_serve(["--config", str(config)], tmp_path)
    url = f"http://127.0.0.1:{server.metrics_port}"
    try:
        replicas = get_metrics(server.address)
        with urllib.request.urlopen(f"{url}/explain?model=llama", timeout=5) as r:
            page = json.loads(r.read())
        assert page["replicas"] == replicas == 3
        assert page["reason"] == "reactive" and page["valid"]
        assert page["demand"]["now"] == pytest.approx(120.0)
        assert page["lead"]["seconds"] == pytest.approx(
            page["lead"]["pod_startup_seconds"] + page["lead"]["node_wait_seconds"] + page["lead"]["poll_seconds"])
        assert page["freshness"]["expires_in_seconds"] > 0

        text = explain("llama", "--url", url)
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith("llama: 3 replicas (reactive)")
        for line in ("demand now", "forecast", "lead time", "scale-down", "bounds", "data"):
            assert f"\n  {line}" in text.stdout, text.stdout
        as_json = explain("llama", "--url", url, "--json")
        assert json.loads(as_json.stdout)["replicas"] == 3

        unknown = explain("nope", "--url", url)
        assert unknown.returncode == 2
        assert "prewarm explain: error:" in unknown.stderr and "'nope' is not in the config" in unknown.stderr
        with urllib.request.urlopen(f"{url}/explain", timeout=5) as r:
            assert json.loads(r.read())["models"] == {"llama": {"replicas": 3, "reason": "reactive"}}
    finally:
        assert server.terminate() == 0


def test_explain_without_a_daemon(config: Path) -> None:
    down = explain("llama", "--url", "http://127.0.0.1:9")
    assert down.returncode == 2 and "cannot reach the daemon" in down.stderr and "Traceback" not in down.stderr
    here = explain("llama", "--config", str(config), "--json")
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout)["replicas"] == 3
