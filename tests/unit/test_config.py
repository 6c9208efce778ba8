from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from scaler.core.config import Defaults, Policy, config_schema, parse_overrides, parse_settings
from scaler.core.errors import ConfigError, MetadataError
from scaler.core.fields import format_duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {"prometheus": {"url": "http://prometheus:9090"}, "models": [{"name": "m", "capacityPerReplica": 8}]}


def parse(raw):
    return parse_settings(raw).settings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("10m", 600), ("1h30m", 5400), ("7d", 604800), ("1w", 604800), ("500ms", 0.5), (90, 90), ("2.5s", 2.5)],
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "1h 30m", "-5s", True, "10mm"])
def test_bad_durations(text) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration_roundtrip() -> None:
    for s in (15, 600, 5400, 86400, 604800, 0.5):
        assert parse_duration(format_duration(s)) == s


def test_minimal_config_gets_defaults() -> None:
    s = parse(MINIMAL)
    assert s.defaults == Defaults()
    m = s.models[0]
    assert m.policy == Policy() and m.minReplicas == 0 and m.maxReplicas == 100 and m.served_name == "m"


def test_model_policy_inherits_defaults_key_by_key() -> None:
    s = parse({**MINIMAL, "defaults": {"quantile": 0.8, "coldStart": {"initial": "7m", "minSamples": 5}},
               "models": [{"name": "a", "capacityPerReplica": 1, "coldStart": {"learn": False}},
                          {"name": "b", "capacityPerReplica": 1, "quantile": 0.95}]})
    a, b = s.models
    assert (a.policy.quantile, a.policy.coldStart.initial, a.policy.coldStart.minSamples, a.policy.coldStart.learn) == (0.8, 420, 5, False)
    assert (b.policy.quantile, b.policy.coldStart.learn) == (0.95, True)


def test_every_problem_is_reported_at_once_by_key_path() -> None:
    raw = {
        "defaults": {"refreshInterval": "5x", "quantile": 1.5},
        "models": [
            {"name": "ok", "capacityPerReplica": 1},
            {"name": "ok", "capacityPerReplica": 1},
            {"name": "Bad Name", "capacityPerReplica": 0},
            {"name": "m3", "capacityPerReplica": 2, "minReplicas": 3, "maxReplicas": 2, "nodePool": "gpu"},
        ],
    }
    with pytest.raises(ConfigError) as err:
        parse_settings(raw)
    problems = err.value.problems
    expected = [
        "defaults.refreshInterval: '5x' is not a duration",
        "defaults.quantile: 1.5, must be in [0.5; 0.99] range",
        "models[2].name: 'Bad Name' is not valid",
        "models[2].capacityPerReplica: 0, must be > 0",
        "prometheus: required (or set `replay`",
        "models[1].name: duplicate model name 'ok'",
        "models[3].maxReplicas: must be >= minReplicas (3)",
        "models[3].nodePool: 'gpu' is not in nodePools (none defined)",
    ]
    for needle in expected:
        assert any(p.startswith(needle) for p in problems), (needle, problems)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        pytest.param(None, "models: required", id="empty"),
        pytest.param([1, 2], "must be a mapping", id="list"),
        pytest.param({**MINIMAL, "models": "m"}, "models: must be a list", id="models-not-list"),
        pytest.param({**MINIMAL, "models": []}, "models: at least one model", id="no-models"),
        pytest.param({**MINIMAL, "prometheus": {"url": "ftp://x"}}, "prometheus.url: 'ftp://x' is not valid", id="url"),
        pytest.param({**MINIMAL, "defaults": {"scaleDown": {"stabilization": "2d"}}}, "defaults.scaleDown.stabilization: 2d, must be in [0s; 1d] range", id="range"),
        pytest.param({**MINIMAL, "defaults": {"minReplicas": 1, "seasonality": "1d"}}, "defaults.seasonality: must be a list", id="season"),
        pytest.param({**MINIMAL, "models": [{"name": "m", "capacityPerReplica": 1, "maxReplicas": True}]}, "models[0].maxReplicas: True is not a whole number", id="bool-int"),
        pytest.param({**MINIMAL, "models": [{"name": "m", "capacityPerReplica": "nan"}]}, "not a finite number", id="nan"),
        pytest.param({**MINIMAL, "models": [{"name": "m", "capacityPerReplica": 1, "labels": {"a": 1}}]}, "models[0].labels: key 'a'", id="labels"),
        pytest.param({**MINIMAL, "nodePools": [{"name": "p", "gpusPerNode": 2, "gpusPerReplica": 4}]}, "nodePools[0].gpusPerReplica: must be <= gpusPerNode (2)", id="pool"),
        pytest.param({**MINIMAL, "models": [{"name": "m", "capacityPerReplica": 1, "demand": "tokens"}]}, "models[0].demand: 'tokens' is not one of concurrency, arrivals", id="demand"),
    ],
)
def test_bad_configs_name_the_key(raw, needle) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(raw)
    assert any(needle in p for p in err.value.problems), err.value.problems


def test_unknown_keys_are_warnings_not_errors() -> None:
    parsed = parse_settings({**MINIMAL, "extra": 1, "defaults": {"refreshIntervall": "5s"},
                             "models": [{"name": "m", "capacityPerReplica": 1, "typo": 2}]})
    assert set(parsed.warnings) == {"extra: unknown key, ignored", "defaults.refreshIntervall: unknown key, ignored (did you mean refreshInterval?)",
                                    "models[0].typo: unknown key, ignored"}


def test_architecture_sketch_parses() -> None:
    text = """
prometheus: {url: http://prometheus.monitoring:9090, timeout: 10s}
defaults:
  refreshInterval: 15s
  refitInterval: 10m
  history: 21d
  seasonality: [1d, 7d]
  quantile: 0.9
  coldStart: {initial: 5m, learn: true}
  scaleDown: {stabilization: 10m}
models:
  - name: llama-3-8b
    target: {namespace: llm, deployment: vllm-llama3-8b}
    capacityPerReplica: 16
    minReplicas: 1
    maxReplicas: 20
    standbyReplicas: 1
    nodePool: gpu-h100
nodePools:
  - name: gpu-h100
    gpusPerNode: 8
    gpusPerReplica: 1
    maxBalloonGpus: 16
    balloon: {namespace: prewarm, nodeSelector: {node-type: gpu}, tolerations: [{key: nvidia.com/gpu, operator: Exists}]}
"""
    parsed = parse_settings(yaml.safe_load(text))
    assert parsed.warnings == ()
    assert parsed.settings.nodePools[0].balloon.tolerations[0]["key"] == "nvidia.com/gpu"


def test_schema_accepts_valid_and_flags_wrong_types() -> None:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    demo = yaml.safe_load((ROOT / "scaler" / "data" / "demo.yaml").read_text())
    jsonschema.validate(demo, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**MINIMAL, "models": [{"name": "m", "capacityPerReplica": "lots"}]}, schema)
    json.dumps(schema)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({}, (None, None, None), id="none"),
        pytest.param({"minReplicas": "2", "maxReplicas": "9", "standbyReplicas": "0"}, (2, 9, 0), id="all"),
        pytest.param({"minReplicas": "", "scalerAddress": "x:1", "enableTLS": "true"}, (None, None, None), id="empty-and-keda-keys"),
    ],
)
def test_overrides(metadata, expected) -> None:
    model = parse(MINIMAL).models[0]
    o = parse_overrides(metadata, model)
    assert (o.minReplicas, o.maxReplicas, o.standbyReplicas) == expected


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"minReplicas": "two"}, "minReplicas: 'two' is not a whole number"),
        ({"maxReplicas": "0"}, "maxReplicas: 0, must be in [1; 10000] range"),
        ({"minReplicas": "200"}, "maxReplicas: 100 must be >= minReplicas (200)"),
        ({"standbyReplicas": "1.5"}, "standbyReplicas: '1.5' is not a whole number"),
    ],
)
def test_bad_overrides_name_key_and_value(metadata, needle) -> None:
    with pytest.raises(MetadataError, match=None) as err:
        parse_overrides(metadata, parse(MINIMAL).models[0])
    assert needle in str(err.value)


def test_config_reference_doc_is_current() -> None:
    import subprocess
    import sys

    generated = subprocess.run([sys.executable, "-m", "scaler", "config-schema", "--markdown"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    assert (ROOT / "docs" / "CONFIG.md").read_text() == generated, "run: prewarm config-schema --markdown > docs/CONFIG.md"


def test_shipped_examples_parse_cleanly() -> None:
    parsed = parse_settings(yaml.safe_load((ROOT / "deploy" / "examples" / "config.yaml").read_text()))
    assert parsed.warnings == ()
    so = yaml.safe_load((ROOT / "deploy" / "examples" / "scaledobject.yaml").read_text())
    trigger = so["spec"]["triggers"][0]
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["model"] in parsed.settings.model_names
    assert so["spec"]["fallback"]["replicas"] > 0


def test_query_overrides_are_validated_on_load(tmp_path) -> None:
    from scaler.app import load_config

    path = tmp_path / "c.yaml"
    path.write_text("prometheus: {url: 'http://p:9090'}\n"
                    "models: [{name: a, capacityPerReplica: 4, queries: {waitng: 'sum(x)'}}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(p.startswith("models[0].queries.waitng") for p in err.value.problems), err.value.problems


def test_slo_inherits_key_by_key_and_sets_the_scale_quantile() -> None:
    raw = {**MINIMAL, "defaults": {"slo": {"onTime": 0.99, "maxQueueTime": "2s"}},
           "models": [{"name": "a", "capacityPerReplica": 8, "slo": {"onTime": 0.999}},
                      {"name": "b", "capacityPerReplica": 8, "quantile": 0.8},
                      {"name": "c", "capacityPerReplica": 8}]}
    a, b, c = parse_settings(raw).settings.models
    assert a.policy.slo is not None and (a.policy.slo.onTime, a.policy.slo.maxQueueTime) == (0.999, 2.0)
    assert a.policy.scale_quantile == 0.5  # the margin covers the rest
    assert b.policy.scale_quantile == 0.8  # an explicit quantile pins the level it reads
    plain = parse_settings(MINIMAL).settings.models[0]
    assert plain.policy.slo is None and plain.policy.scale_quantile == 0.9
    assert c.policy.slo == parse_settings(raw).settings.defaults.policy.slo


@pytest.mark.parametrize(("slo", "needle"), [
    ({"onTime": 1.5}, "models[0].slo.onTime"),
    ({"onTime": 0.99, "maxQueueTime": "soon"}, "models[0].slo.maxQueueTime"),
    ({"maxQueueTime": "1s"}, "models[0].slo.onTime: required"),
    ({"onTime": 0.99, "window": "10s"}, "models[0].slo.window"),
])
def test_bad_slo_names_the_key(slo: dict[str, object], needle: str) -> None:
    raw = {**MINIMAL, "models": [{"name": "m", "capacityPerReplica": 8, "slo": slo}]}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw)
    assert needle in str(info.value)
