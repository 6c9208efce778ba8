"""Pods are watched per namespace, following the config: the models' namespaces and the balloons'.

A namespace the RBAC does not grant is a watch that keeps failing (counted, retried) while the
granted ones keep working; a namespace dropped from the config stops its watch and its pods are
forgotten.
"""

from __future__ import annotations

import pytest

from scaler.core.config import parse_settings
from tests.kube.common import MODEL_NAMESPACE, build, raw_config, running
from tests.support.kubeenv import KubeEnv, Player, eventually, unique

pytestmark = [pytest.mark.kube]


async def test_pods_follow_the_configured_namespaces(kube: KubeEnv, player: Player) -> None:
    config = raw_config()
    parts = build(kube, parse_settings(config).settings)
    player.pod(MODEL_NAMESPACE, unique("vllm"), {"app": "vllm-llama"})
    player.pod("prewarm", unique("balloon"), {"prewarm.io/balloon": "gpu-h100"})
    async with running(parts, skip=("kubernetes-balloons",)):
        assert sorted(w.name for w in parts.pods.watches()) == ["pods llm", "pods prewarm"]
        await eventually(lambda: {p.namespace for p in parts.cluster.pods.values()} == {MODEL_NAMESPACE, "prewarm"},
                         timeout=10, what="pods of both namespaces")

        # A model in a namespace the RBAC does not name: its watch fails (403) and retries; the others go on.
        config["models"].append({"name": "other", "capacityPerReplica": 4,
                                 "target": {"namespace": "team-x", "deployment": "vllm-x"}})
        parts.apply(parse_settings(config).settings)
        await eventually(lambda: any(w.name == "pods team-x" and w.stats.errors for w in parts.watches),
                         timeout=10, what="the refused watch")
        refused = next(w for w in parts.watches if w.name == "pods team-x")
        assert "403" in (refused.stats.last_error or "")
        player.pod(MODEL_NAMESPACE, unique("vllm"), {"app": "vllm-llama"})
        await eventually(lambda: sum(p.namespace == MODEL_NAMESPACE for p in parts.cluster.pods.values()) == 2,
                         timeout=10, what="llm still watched")

        # The model namespace leaves the config: its watch stops and its pods are forgotten.
        config["models"] = [m for m in config["models"] if m["target"]["namespace"] != MODEL_NAMESPACE]
        parts.apply(parse_settings(config).settings)
        await eventually(lambda: sorted(w.name for w in parts.pods.watches()) == ["pods prewarm", "pods team-x"],
                         timeout=5, what="llm's watch stopped")
        assert {p.namespace for p in parts.cluster.pods.values()} == {"prewarm"}
