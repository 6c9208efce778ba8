"""Balloon Deployments on a real kube-apiserver: sized to a forecast ramp, shrunk as real pods arrive;
a missing one is reported, never created; a drifted template is reported, never rewritten.

The engine's decisions are given directly (``prewarm_replicas`` is what it computes from the
forecast within lead + node provisioning); the node autoscaler and the scheduler are played: new
nodes for pending balloons, balloons bound to them, real pods preempting balloons.
"""

from __future__ import annotations

import pytest

from scaler.core.config import Settings
from scaler.core.model import Decision
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj
from scaler.edges.kubernetes.balloons import (
    BALLOON_PRIORITY,
    DRIFT_REASON,
    MISSING_REASON,
    PAUSE_IMAGE,
    balloon_deployment,
)
from scaler.edges.kubernetes.collector import KubernetesCollector
from tests.kube.common import MODEL_NAMESPACE, POOL, POOL_LABELS, build, decision, running, settings
from tests.support.kubeenv import GPU, KubeEnv, Player, eventually, unique

pytestmark = [pytest.mark.kube, pytest.mark.slow]

BALLOON = f"/apis/apps/v1/namespaces/prewarm/deployments/prewarm-balloon-{POOL}"
LLAMA = {"app": "vllm-llama"}
QWEN = {"app": "vllm-qwen"}


def balloon_replicas(admin: Api) -> int | None:
    try:
        scale = admin.get(BALLOON + "/scale")
    except KubeApiError as exc:
        if exc.not_found:
            return None
        raise
    return int(scale["spec"].get("replicas", 0))


def decisions(llama: tuple[int, int], qwen: tuple[int, int], *, qwen_valid: bool = True) -> dict[str, Decision]:
    """(replicas, prewarm_replicas) per model, as the engine would decide them."""
    return {"llama": decision("llama", replicas=llama[0], prewarm=llama[1]),
            "qwen": decision("qwen", replicas=qwen[0], prewarm=qwen[1], valid=qwen_valid)}


def full_node(player: Player, gpus: int = 8) -> str:
    """A pool node whose GPUs are all taken by running replicas."""
    name = unique("h100")
    created = player.created(player.node(name, POOL_LABELS))
    player.node_ready(name, at=created + 120, gpus=gpus)
    for i in range(gpus):
        player.pod(MODEL_NAMESPACE, unique("vllm"), LLAMA if i % 2 else QWEN, node=name)
    return name


async def test_balloons_follow_a_forecast_ramp_and_shrink_as_real_pods_arrive(
    kube: KubeEnv, player: Player, admin: Api, balloon: Obj
) -> None:
    player.deployment(MODEL_NAMESPACE, "vllm-llama", LLAMA)
    player.deployment(MODEL_NAMESPACE, "vllm-qwen", QWEN)
    config = settings()
    full_node(player)
    async with running(build(kube, config)) as parts:
        await eventually(parts.is_leader, timeout=5, what="leadership")
        await eventually(lambda: len(parts.cluster.pods) >= 8 and len(parts.cluster.selectors) == 2,
                         timeout=10, what="cluster view")

        async def step(llama: tuple[int, int], qwen: tuple[int, int], **kw: bool) -> int | None:
            await parts.balloons.actuate(config, decisions(llama, qwen, **kw), now=0.0)
            return balloon_replicas(admin)

        # Nothing forecast beyond what runs: the chart's Deployment stays at 0.
        assert await step((4, 0), (4, 0)) == 0
        # The forecast ramps up within the node-provisioning lead: GPUs are pre-warmed.
        assert await step((4, 2), (4, 0)) == 2
        deployment = admin.get(BALLOON)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "prewarm-balloon"
        assert pod["nodeSelector"] == POOL_LABELS
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        container = pod["containers"][0]
        assert container["image"] == PAUSE_IMAGE
        assert container["resources"]["limits"][GPU] == container["resources"]["requests"][GPU] == "1"
        assert admin.get("/apis/scheduling.k8s.io/v1/priorityclasses/prewarm-balloon")["value"] == BALLOON_PRIORITY
        assert await step((4, 3), (4, 1)) == 4
        # 5 + 2 wanted, but maxBalloonGpus is 6: the cap is a ceiling.
        assert await step((4, 5), (4, 2)) == 6
        assert parts.balloons.status.plans[POOL].capped

        # The autoscaler adds a node for the pending balloons; they land on it (2 GPUs stay free).
        node_b = unique("h100")
        created = player.created(player.node(node_b, POOL_LABELS))
        player.node_ready(node_b, at=created + 150, gpus=8)
        balloons = [player.pod("prewarm", unique("balloon"), {"prewarm.io/balloon": POOL}, node=node_b)
                    for _ in range(6)]
        await eventually(lambda: parts.cluster.pool_capacity(config.nodePools[0]).balloon_gpus == 6,
                         timeout=10, what="balloons bound")
        # 7 wanted - 2 free = 5: free GPUs are headroom too.
        assert await step((4, 5), (4, 2)) == 5

        # The forecast arrives: replicas are ordered (prewarm falls), real pods preempt balloons.
        for b in balloons[:4]:
            admin.request("DELETE", f"/api/v1/namespaces/prewarm/pods/{b['metadata']['name']}",
                          query={"gracePeriodSeconds": "0"})
        for labels in (LLAMA, LLAMA, LLAMA, QWEN):
            player.pod(MODEL_NAMESPACE, unique("vllm"), labels, node=node_b)
        await eventually(lambda: parts.cluster.pool_capacity(config.nodePools[0]).balloon_gpus == 2,
                         timeout=10, what="balloons preempted")
        # 2 + 1 still wanted, 2 GPUs free on node B: one balloon is enough.
        assert await step((7, 2), (5, 1)) == 1
        # Missing data for a model of the pool never shrinks the balloons (fail static)...
        assert await step((7, 0), (5, 0), qwen_valid=False) == 1
        # ...and once the forecast has passed they go.
        assert await step((7, 0), (5, 0)) == 0
        assert parts.balloons.status.errors_total == 0
        assert not parts.balloons.status.missing and not parts.balloons.status.drifted


async def test_only_the_leader_actuates(kube: KubeEnv, player: Player, admin: Api, balloon: Obj) -> None:
    config: Settings = settings()
    async with running(build(kube, config, identity="a")) as a:
        await eventually(a.is_leader, timeout=5, what="a leads")
        async with running(build(kube, config, identity="b")) as b:
            await eventually(lambda: b.elector._observed is not None, timeout=5, what="b observes a's lease")
            assert not b.is_leader()
            await b.balloons.actuate(config, decisions((1, 3), (1, 0)), now=0.0)
            assert balloon_replicas(admin) == 0, "a follower must never write"
            await a.balloons.actuate(config, decisions((1, 3), (1, 0)), now=0.0)
            assert balloon_replicas(admin) == 3


def warnings(admin: Api, reason: str) -> list[Obj]:
    events = admin.get("/api/v1/namespaces/prewarm/events")["items"]
    return [e for e in events if e.get("reason") == reason and e.get("type") == "Warning"]


def gauge(parts: object, name: str) -> float | None:
    for family in KubernetesCollector(parts).collect():  # type: ignore[arg-type]
        for sample in family.samples:
            if sample.name == name and sample.labels.get("pool") == POOL:
                return float(sample.value)
    return None


async def test_a_missing_balloon_is_reported_never_created(kube: KubeEnv, admin: Api) -> None:
    config = settings()
    async with running(build(kube, config)) as parts:
        await eventually(parts.is_leader, timeout=5, what="leadership")
        for _ in range(3):  # every round: still missing, reported once
            await parts.balloons.actuate(config, decisions((1, 3), (1, 0)), now=0.0)
        assert balloon_replicas(admin) is None, "the daemon must not create the Deployment"
        assert "not found" in parts.balloons.status.missing[POOL]
        assert gauge(parts, "prewarm_balloon_missing") == 1.0
        (event,) = warnings(admin, MISSING_REASON)
        assert event["involvedObject"]["name"] == f"prewarm-balloon-{POOL}"
        assert "re-render" in event["message"]

        # The operator applies the chart: the next round scales it, and the report clears.
        admin.create("/apis/apps/v1/namespaces/prewarm/deployments", balloon_deployment(config.nodePools[0]))
        await parts.balloons.actuate(config, decisions((1, 3), (1, 0)), now=0.0)
        assert balloon_replicas(admin) == 3
        assert gauge(parts, "prewarm_balloon_missing") == 0.0


async def test_a_drifted_template_is_reported_and_left_alone(kube: KubeEnv, admin: Api, balloon: Obj) -> None:
    config = settings()
    old_pool = {"node-type": "old-pool", "prewarm.io/pool": None}  # merge patch: null removes a key
    admin.merge_patch(BALLOON, {"spec": {"template": {"spec": {"nodeSelector": old_pool}}}})
    async with running(build(kube, config)) as parts:
        await eventually(parts.is_leader, timeout=5, what="leadership")
        await parts.balloons.actuate(config, decisions((1, 2), (1, 0)), now=0.0)
        await parts.balloons.actuate(config, decisions((1, 2), (1, 0)), now=0.0)
        assert balloon_replicas(admin) == 2  # still scaled: the template in place is the operator's
        assert admin.get(BALLOON)["spec"]["template"]["spec"]["nodeSelector"] == {"node-type": "old-pool"}
        assert gauge(parts, "prewarm_balloon_template_drift") == 1.0
        assert len(warnings(admin, DRIFT_REASON)) == 1
        # The chart's own template, as the API server returns it (defaults filled in), is no drift.
        back = {**POOL_LABELS, "node-type": None}
        admin.merge_patch(BALLOON, {"spec": {"template": {"spec": {"nodeSelector": back}}}})
        await parts.balloons.actuate(config, decisions((1, 2), (1, 0)), now=0.0)
        assert gauge(parts, "prewarm_balloon_template_drift") == 0.0
