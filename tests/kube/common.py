"""Config and lifecycle helpers shared by the tests/kube modules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from scaler.core.clock import Clock, SystemClock
from scaler.core.config import ParsedSettings, Settings, parse_settings
from scaler.core.model import Decision, Reason
from scaler.edges.kubernetes.edge import KubernetesEdge, build_kubernetes
from tests.support.kubeenv import KubeEnv

POOL = "gpu-h100"
POOL_LABELS = {"prewarm.io/pool": POOL}
MODEL_NAMESPACE = "llm"


def raw_config(**kubernetes: Any) -> dict[str, Any]:
    return {
        "prometheus": {"url": "http://127.0.0.1:9"},
        "models": [
            {"name": "llama", "capacityPerReplica": 16, "maxReplicas": 20, "nodePool": POOL,
             "target": {"namespace": MODEL_NAMESPACE, "deployment": "vllm-llama"},
             "coldStart": {"initial": "5m", "minSamples": 3, "nodeProvisioning": "4m"}},
            {"name": "qwen", "capacityPerReplica": 8, "maxReplicas": 10, "nodePool": POOL,
             "target": {"namespace": MODEL_NAMESPACE, "deployment": "vllm-qwen"}},
        ],
        "nodePools": [{"name": POOL, "gpusPerNode": 8, "gpusPerReplica": 1, "maxBalloonGpus": 6,
                       "balloon": {"namespace": "prewarm", "nodeSelector": dict(POOL_LABELS),
                                   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                    "effect": "NoSchedule"}]}}],
        "kubernetes": {"namespace": "prewarm", "leaseDuration": "2s", "renewPeriod": "0.5s",
                       **kubernetes},
    }


def settings(**kubernetes: Any) -> Settings:
    return parse_settings(raw_config(**kubernetes)).settings


def build(kube: KubeEnv, config: Settings, *, clock: Clock | None = None, identity: str | None = None,
          on_settings: Callable[[ParsedSettings], None] | None = None) -> KubernetesEdge:
    """The daemon's parts, talking with the ServiceAccount token (never the admin)."""
    return build_kubernetes(config, clock=clock or SystemClock(), kubeconfig=str(kube.daemon_kubeconfig),
                            on_settings=on_settings or (lambda parsed: None), identity=identity)


@contextlib.asynccontextmanager
async def running(parts: KubernetesEdge, *, skip: tuple[str, ...] = ()) -> AsyncIterator[KubernetesEdge]:
    """Run the parts' tasks (except ``skip``), wait for the watches' first lists; stop and close."""
    tasks = [asyncio.create_task(t(), name=t.__name__) for t in parts.tasks() if t.__name__ not in skip]
    try:
        await asyncio.wait_for(parts.wait_synced(), 20)
        yield parts
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await parts.aclose()


def decision(model: str, *, replicas: int, prewarm: int, valid: bool = True, at: float = 0.0) -> Decision:
    return Decision(model=model, at=at, replicas=replicas, reason=Reason.FORECAST, valid=valid,
                    active=True, prewarm_replicas=prewarm)
