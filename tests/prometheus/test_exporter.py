"""The vLLM stand-in itself: a valid exposition with vLLM's exact names and labels."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus.conftest import MID, SMALL
from tests.support import promenv

pytestmark = pytest.mark.prometheus

V1 = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
      "vllm:request_success", "vllm:prompt_tokens", "vllm:generation_tokens",
      "vllm:time_to_first_token_seconds", "vllm:request_queue_time_seconds",
      "vllm:inter_token_latency_seconds"}
LEGACY = {"vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
          "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds"}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.parametrize(("pod", "served", "engines"), [
    pytest.param(0, SMALL, 2, id="two-engines"), pytest.param(1, SMALL, 1, id="one-engine"),
    pytest.param(2, MID, 1, id="legacy-names"),
])
def test_exposition(prom_env: promenv.PromEnv, pod: int, served: str, engines: int) -> None:
    text = scrape(prom_env.exporter.pod_ports[pod])
    lint = subprocess.run([prom_env.promtool, "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=30)
    # vLLM's own names contain ':' (a naming lint, not a format error); nothing else may show.
    complaints = [line for line in (lint.stdout + lint.stderr).splitlines()
                  if line.strip() and "should not contain ':'" not in line]
    assert complaints == []
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = V1 if served == SMALL else (V1 - set(LEGACY.values())) | set(LEGACY)
    assert set(families) == expected
    for family in families.values():
        for sample in family.samples:
            assert sample.labels["model_name"] == served
            assert sample.labels["engine"] in {str(k) for k in range(engines)}
