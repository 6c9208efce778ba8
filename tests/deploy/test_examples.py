"""deploy/examples: the ScaledObjects match KEDA's ScaledObject schema (tests/deploy/crds.py), and the
reactive fallback keeps the rules KEDA 2.20 applies to `fallback.behavior: scalingModifiers`
(read from kedacore/keda: the admission webhook, pkg/fallback and pkg/scaling/modifiers).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import crds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
FALLBACK = EXAMPLES / "scaledobject-reactive-fallback.yaml"
CONFIG = yaml.safe_load((EXAMPLES / "config.yaml").read_text())


def load(path: Path) -> dict[str, Any]:
    (obj,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return obj


@pytest.mark.parametrize("name", ["scaledobject.yaml", "scaledobject-reactive-fallback.yaml"])
def test_example_scaledobjects_match_the_schema(name: str) -> None:
    obj = load(EXAMPLES / name)
    assert not crds.validate(obj), crds.validate(obj)
    external = next(t for t in obj["spec"]["triggers"] if t["type"].startswith("external"))
    assert external["metadata"]["model"] in {m["name"] for m in CONFIG["models"]}


def test_the_schema_refuses_what_keda_2_20_refuses() -> None:
    obj = load(FALLBACK)
    obj["spec"]["fallback"]["behavior"] = "queue"
    obj["spec"]["advanced"]["scalingModifiers"]["metricType"] = "Utilization"
    assert len(crds.validate(obj)) == 2


def test_reactive_fallback_follows_keda_rules() -> None:
    spec = load(FALLBACK)["spec"]
    modifiers, fallback = spec["advanced"]["scalingModifiers"], spec["fallback"]
    names = [t["name"] for t in spec["triggers"]]
    # behavior scalingModifiers needs a formula; fallback with modifiers needs an integer target > 0
    assert fallback["behavior"] == "scalingModifiers" and modifiers["formula"]
    assert re.fullmatch(r"[1-9][0-9]*", modifiers["target"])
    # the formula: prewarm's answer, else the reactive trigger; every name a trigger's
    chain = [part.strip() for part in modifiers["formula"].split("??")]
    assert chain == names and names[0] == "prewarm"
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names)  # expr identifiers
    # both triggers answer replicas against target 1, so the formula's value is the replica count
    assert modifiers["target"] == "1" and modifiers["metricType"] == "AverageValue"
    assert {t["metricType"] for t in spec["triggers"]} == {"AverageValue"}
    # an erroring ScaledObject never wakes from zero
    assert spec["minReplicaCount"] >= 1 and 0 < fallback["replicas"] <= spec["maxReplicaCount"]


def test_reactive_query_is_valid_promql_for_the_configured_model(promtool: str, tmp_path: Path) -> None:
    spec = load(FALLBACK)["spec"]
    queue = next(t for t in spec["triggers"] if t["type"] == "prometheus")["metadata"]
    model = next(m for m in CONFIG["models"] if m["name"] == "llama-3-8b")
    assert f'model_name="{model["servedModelName"]}"' in queue["query"]
    assert f"/ {model['capacityPerReplica']})" in queue["query"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q", "expr": queue["query"]}]}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
