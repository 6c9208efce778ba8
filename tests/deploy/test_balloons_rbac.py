"""The chart renders the balloon Deployments and the narrowed RBAC from the config: one balloon
Deployment per pool, equal to what the daemon's balloons.py describes, and pods readable only in
the models' namespaces. No grant creates Deployments or lists pods cluster-wide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.core.config import parse_settings
from scaler.edges.kubernetes.balloons import balloon_deployment
from tests.deploy.test_manifests import find, helm_render

Obj = dict[str, Any]
TWO_POOLS = {"config": {
    "nodePools": [{"name": "gpu-a", "gpusPerNode": 8, "maxBalloonGpus": 8},
                  {"name": "gpu-b", "gpusPerNode": 4, "gpusPerReplica": 2, "maxBalloonGpus": 4,
                   "balloon": {"gpuResource": "amd.com/gpu", "nodeSelector": {"pool": "b"},
                               "tolerations": [{"key": "gpu", "operator": "Exists"}]}}],
    "models": [{"name": "m", "capacityPerReplica": 4, "nodePool": "gpu-b",
                "target": {"namespace": "team-a", "deployment": "vllm-m"}},
               {"name": "n", "capacityPerReplica": 4, "target": {"namespace": "team-b", "deployment": "vllm-n"}},
               {"name": "o", "capacityPerReplica": 4, "target": {"namespace": "team-a", "deployment": "vllm-o"}},
               {"name": "p", "capacityPerReplica": 4}]}}


def rules_of(objs: list[Obj]) -> list[tuple[Obj, Obj]]:
    return [(o, rule) for o in objs if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]


@pytest.mark.parametrize("values", [pytest.param({}, id="default"), pytest.param(TWO_POOLS, id="two-pools")])
def test_balloons_are_the_daemons_template(helm_sdk: Path, values: Obj) -> None:
    objs = helm_render(helm_sdk, values, name="scaler", namespace="inference")
    config = yaml.safe_load(find(objs, "ConfigMap", "scaler-prewarm-config")["data"]["config.yaml"])
    settings = parse_settings(config).settings
    balloons = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("prewarm-balloon-")]
    assert len(balloons) == len(settings.nodePools) >= 1
    for pool in settings.nodePools:
        rendered = find(objs, "Deployment", f"prewarm-balloon-{pool.name}")
        wanted = balloon_deployment(pool, 0)
        assert rendered["spec"] == wanted["spec"], pool.name
        assert rendered["metadata"]["namespace"] == wanted["metadata"]["namespace"] == "inference"
        assert wanted["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()
    role = find(objs, "Role", "scaler-prewarm")
    names = {f"prewarm-balloon-{p.name}" for p in settings.nodePools}
    balloon_rules = [r for r in role["rules"] if "apps" in r["apiGroups"]]
    assert sorted((r["resources"], r["verbs"]) for r in balloon_rules) == [
        (["deployments"], ["get"]), (["deployments/scale"], ["get", "patch", "update"])]
    assert all(set(r["resourceNames"]) == names for r in balloon_rules)


def test_pods_are_read_in_the_models_namespaces_only(helm_sdk: Path) -> None:
    objs = helm_render(helm_sdk, TWO_POOLS, name="scaler", namespace="inference")
    readers = {(o["metadata"]["namespace"]) for o, rule in rules_of(objs)
               if o["kind"] == "Role" and "pods" in rule["resources"]}
    # the models' namespaces, and the release namespace for the balloon pods
    assert readers == {"team-a", "team-b", "inference"}
    for namespace in ("team-a", "team-b"):
        role = find([o for o in objs if o["metadata"].get("namespace") == namespace], "Role", "scaler-prewarm-models")
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                                 {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
        binding = find([o for o in objs if o["metadata"].get("namespace") == namespace], "RoleBinding")
        assert binding["roleRef"]["name"] == "scaler-prewarm-models"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scaler-prewarm", "namespace": "inference"}]


@pytest.mark.parametrize("values", [pytest.param({}, id="default"), pytest.param(TWO_POOLS, id="two-pools")])
def test_no_grant_creates_deployments_or_reads_pods_cluster_wide(helm_sdk: Path, values: Obj) -> None:
    objs = helm_render(helm_sdk, values)
    for obj, rule in rules_of(objs):
        if "apps" in rule["apiGroups"]:
            assert not {"create", "update", "patch", "delete"} & set(rule["verbs"]) or \
                rule["resources"] == ["deployments/scale"], (obj["metadata"]["name"], rule)
        if obj["kind"] == "ClusterRole":
            assert "pods" not in rule["resources"] and "deployments" not in rule["resources"], rule
            assert not {"create", "update", "patch", "delete"} & set(rule["verbs"]), rule
