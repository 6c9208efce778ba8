"""Learned cold starts on a real kube-apiserver: pods' and nodes' lives played through the API.

The daemon side (``build_kubernetes`` with the ServiceAccount token bound by deploy/rbac) watches;
the test plays the scheduler, kubelets and the node autoscaler. Expected values are computed with
the pure core from the same timelines the server recorded, and checked for their meaning (stages
kept apart, node wait not in the pod startup).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from scaler.core.clock import FakeClock
from scaler.core.coldstart import NodeTimeline, PodTimeline, estimate_cold_start, lead_seconds
from scaler.edges.kubernetes.api import Api
from tests.kube.common import MODEL_NAMESPACE, POOL_LABELS, build, running, settings
from tests.support.kubeenv import KubeEnv, Player, eventually, unique

pytestmark = [pytest.mark.kube, pytest.mark.slow]

LLAMA = {"app": "vllm-llama"}


def existing_node(player: Player, *, provisioning: float, gpus: int = 8) -> tuple[str, float, float]:
    """A pool node that is Ready ``provisioning`` seconds after its creation: (name, created, ready)."""
    name = unique("h100")
    created = player.created(player.node(name, POOL_LABELS))
    player.node_ready(name, at=created + provisioning, gpus=gpus)
    return name, created, created + provisioning


def started_pod(player: Player, node: str, *, scheduled_after: float, ready_after: float,
                labels: dict[str, str] = LLAMA) -> tuple[str, float]:
    """A pod bound to ``node`` and Ready ``ready_after`` s after creation: (name, created)."""
    name = unique("vllm")
    created = player.created(player.pod(MODEL_NAMESPACE, name, labels))
    player.bind(MODEL_NAMESPACE, name, node)
    player.pod_status(MODEL_NAMESPACE, name, scheduled=created + scheduled_after,
                      containers_ready=created + ready_after - 2, ready=created + ready_after)
    return name, created


async def test_cold_start_is_learned_from_realistic_timelines(kube: KubeEnv, player: Player) -> None:
    player.deployment(MODEL_NAMESPACE, "vllm-llama", LLAMA)
    config = settings()
    llama = config.models[0]
    clock = FakeClock(time.time())
    async with running(build(kube, config, clock=clock)) as parts:
        await eventually(lambda: bool(parts.cluster.selectors), timeout=10, what="selectors")
        before = parts.cluster.cold_start(llama, now=clock.now())
        assert before is not None
        assert (before.learned, before.pod_startup_seconds, before.samples) == (False, 300.0, 0)
        assert before.node_provisioning_seconds == 240.0  # the config's nodeProvisioning: no nodes yet

        # Three startups on a node that was there before them: image pull + weights + warm-up.
        node_a, node_a_created, node_a_ready = existing_node(player, provisioning=140)
        timelines = []
        for ready_after in (305.0, 335.0, 615.0):
            name, created = started_pod(player, node_a, scheduled_after=2, ready_after=ready_after)
            timelines.append(PodTimeline(uid=name, created=created, scheduled=created + 2,
                                         node_created=node_a_created, node_ready=node_a_ready,
                                         ready=created + ready_after))
        # Two scale-ups that waited for new nodes: pods first, the autoscaler's nodes after them.
        waiting = [(unique("vllm"), 400.0), (unique("vllm"), 420.0)]
        created_at = {n: player.created(player.pod(MODEL_NAMESPACE, n, LLAMA)) for n, _ in waiting}
        await asyncio.sleep(1.1)  # creationTimestamp has whole seconds: the nodes come strictly later
        nodes = [NodeTimeline(name=node_a, created=node_a_created, ready=node_a_ready)]
        for (pod, startup), provisioning in zip(waiting, (180.0, 200.0), strict=True):
            node, node_created, node_ready = existing_node(player, provisioning=provisioning)
            nodes.append(NodeTimeline(name=node, created=node_created, ready=node_ready))
            player.bind(MODEL_NAMESPACE, pod, node)
            created = created_at[pod]
            player.pod_status(MODEL_NAMESPACE, pod, scheduled=node_ready + 3,
                              ready=node_ready + 3 + startup)
            timelines.append(PodTimeline(uid=pod, created=created, scheduled=node_ready + 3,
                                         node_created=node_created, node_ready=node_ready,
                                         ready=node_ready + 3 + startup))
        # Not the model's, and not Ready yet: neither is a sample.
        started_pod(player, node_a, scheduled_after=1, ready_after=10, labels={"app": "other"})
        player.pod(MODEL_NAMESPACE, unique("vllm"), LLAMA)

        def learned_all() -> bool:
            cold = parts.cluster.cold_start(llama, now=clock.now())
            return cold is not None and cold.samples == 5
        await eventually(learned_all, timeout=10, what="five startups learned")

        cold = parts.cluster.cold_start(llama, now=clock.now())
        assert cold is not None and cold.learned
        expected = estimate_cold_start(timelines, llama.policy.coldStart, now=clock.now(), nodes=nodes)
        assert cold == expected
        # The stages are apart: the node waits (~181 s, ~201 s) are not in the pod startups.
        assert all(180 < (t.node_wait_seconds or 0) < 205 for t in timelines[3:])
        assert [t.startup_seconds for t in timelines[3:]] == [403.0, 423.0]
        assert 500 < cold.pod_startup_seconds <= 615
        assert cold.node_provisioning_seconds == 200.0  # p90 of 140, 180, 200 with three samples

        # Lead time: node provisioning counts only while the pool has no spare GPU.
        assert parts.pool_has_spare(llama) is True  # node A: 8 GPUs, 3 + 1 taken; B, C have room
        spare = lead_seconds(cold, pool_has_spare=True, decision_delay_seconds=30)
        full = lead_seconds(cold, pool_has_spare=False, decision_delay_seconds=30)
        assert full - spare == cold.node_provisioning_seconds


async def test_learned_cold_start_survives_a_restart(kube: KubeEnv, player: Player, admin: Api) -> None:
    player.deployment(MODEL_NAMESPACE, "vllm-llama", LLAMA)
    config = settings()
    llama = config.models[0]
    node, _, _ = existing_node(player, provisioning=150)
    async with running(build(kube, config, identity="first")) as parts:
        await eventually(parts.is_leader, timeout=5, what="leadership")
        await eventually(lambda: bool(parts.cluster.selectors), timeout=10, what="selectors")
        pods = [started_pod(player, node, scheduled_after=1, ready_after=r)[0] for r in (240.0, 260.0, 480.0)]
        await eventually(lambda: len(parts.cluster.startup_samples(llama)) == 3, timeout=10,
                         what="three startups")
        learned = parts.cluster.cold_start(llama, now=time.time())
        # Scale-down: the pods go; what they taught stays (frozen on delete, saved on close).
        for pod in pods:
            admin.request("DELETE", f"/api/v1/namespaces/{MODEL_NAMESPACE}/pods/{pod}",
                          query={"gracePeriodSeconds": "0"})
        await eventually(lambda: not parts.cluster.model_pods(llama), timeout=10, what="pods gone")
        assert parts.cluster.cold_start(llama, now=time.time()) == learned
    state = admin.get("/api/v1/namespaces/prewarm/configmaps/prewarm-state")
    assert "llama" in state["data"]["state.json"]

    async with running(build(kube, config, identity="second")) as restarted:
        await eventually(lambda: restarted.state.loaded, timeout=10, what="state loaded")
        again = restarted.cluster.cold_start(llama, now=time.time())
        assert again is not None and learned is not None
        assert again.learned and again.samples == 3
        assert again.pod_startup_seconds == pytest.approx(learned.pod_startup_seconds, abs=0.01)


async def test_spare_gpus_decide_whether_node_provisioning_counts(kube: KubeEnv, player: Player) -> None:
    player.deployment(MODEL_NAMESPACE, "vllm-llama", LLAMA)
    config = settings()
    llama = config.models[0]
    pool = config.nodePools[0]
    node, _, _ = existing_node(player, provisioning=120, gpus=4)
    async with running(build(kube, config)) as parts:
        await eventually(lambda: bool(parts.cluster.selectors), timeout=10, what="selectors")
        pods = [player.pod(MODEL_NAMESPACE, unique("vllm"), LLAMA, node=node) for _ in range(3)]
        balloon = player.pod("prewarm", unique("balloon"), {"prewarm.io/balloon": pool.name}, node=node)
        await eventually(lambda: len(parts.cluster.pods) >= 4, timeout=10, what="pods seen")
        capacity = parts.cluster.pool_capacity(pool)
        assert (capacity.allocatable_gpus, capacity.free_gpus, capacity.balloon_gpus,
                capacity.spare_gpus) == (4, 0, 1, 1)
        assert parts.pool_has_spare(llama) is True  # the balloon's GPU is a real pod's for the taking

        # A real replica preempts the balloon (the scheduler's work, played): now the pool is full.
        player.api.request("DELETE", f"/api/v1/namespaces/prewarm/pods/{balloon['metadata']['name']}",
                           query={"gracePeriodSeconds": "0"})
        player.pod(MODEL_NAMESPACE, unique("vllm"), LLAMA, node=node)
        await eventually(lambda: parts.pool_has_spare(llama) is False, timeout=10, what="pool full")
        # A pending replica of the model takes the next free slot first.
        player.api.request("DELETE", f"/api/v1/namespaces/{MODEL_NAMESPACE}/pods/{pods[0]['metadata']['name']}",
                           query={"gracePeriodSeconds": "0"})
        player.pod(MODEL_NAMESPACE, unique("vllm"), LLAMA)  # Pending, unbound
        await eventually(lambda: len(parts.cluster.model_pods(llama)) == 4 and any(
            p.node is None for p in parts.cluster.model_pods(llama)), timeout=10, what="pending pod")
        assert parts.pool_has_spare(llama) is False
