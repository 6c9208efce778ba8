"""Query overrides go through a real PromQL parser when the config is read (issue 13, item 6):
`prewarm check-config` refuses them naming the key and, where it can, the column."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.edges.prometheus import checks, promql
from tests.cli.conftest import Run

CONFIG = """\
prometheus: {{url: http://prometheus:9090}}
models:
  - name: m
    capacityPerReplica: 4
    queries:
      running: '{query}'
"""


def write(tmp_path: Path, query: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(query=query))
    return path


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("rat(vllm:num_requests_running{{{matchers}}}[{{window}}])",
                 "models[0].queries.running: not valid PromQL at column 1: unknown function with name 'rat'",
                 id="misspelt-function"),
    pytest.param("sum(rate(x{{{matchers}}}[1x]))",
                 "models[0].queries.running: not valid PromQL at column 26: bad number or duration syntax: 1x",
                 id="bad-window"),
    pytest.param("sum(x{{{matchers}}}) sum(y)", "models[0].queries.running: not valid PromQL: ",
                 id="two-expressions"),
])
def test_check_config_refuses_invalid_promql(prewarm: Run, tmp_path: Path, query: str, expected: str) -> None:
    result = prewarm("check-config", str(write(tmp_path, query)))
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr


def test_check_config_accepts_valid_promql(prewarm: Run, tmp_path: Path) -> None:
    query = "sum by (model_name) (rate(gateway_requests_total{{{matchers}}}[{{window}}]))"
    result = prewarm("check-config", str(write(tmp_path, query)))
    assert result.returncode == 0, result.stderr


def test_every_default_query_parses() -> None:
    assert checks.validate_queries(promql.SIGNALS, batched=True) == []


@pytest.mark.parametrize("query", [
    "holt_winters(x{{{matchers}}}[{{window}}], 0.5, 0.5)",  # Prometheus 2.x's name
    "double_exponential_smoothing(x{{{matchers}}}[{{window}}], 0.5, 0.5)",  # Prometheus 3
    "histogram_quantile(0.95, sum by (le) (rate(x_bucket{{{matchers}}}[{{window}}])))",
    'label_replace(x{{{matchers}}}, "a", "$1", "b", "(.*)")',
])
def test_queries_real_servers_accept_pass(query: str) -> None:
    assert checks.validate_queries({"running": query}) == []


def test_the_column_is_left_out_when_the_culprit_is_ambiguous() -> None:
    # Both 'rate' calls exist; only the second is wrong, so no column is claimed.
    problems = checks.validate_queries({"running": "rate(x[1m]) + rate(y{{{matchers}}})"})
    assert problems == ["running: not valid PromQL: expected type matrix in call to function 'rate', got vector"]
