"""Balloon Deployments: pre-warmed GPU capacity per node pool (leader only).

Per pool, a Deployment ``prewarm-balloon-<pool>`` of pause pods, each requesting one replica's
GPUs (``gpusPerReplica``) on the pool's nodes (nodeSelector, tolerations) at a negative priority
(``-10`` by default, cluster-autoscaler's overprovisioning value: still above its default
``--expendable-pods-priority-cutoff``, so it scales up for them). The autoscaler adds nodes for
pending balloons; a real pod preempts a balloon and starts on a Ready node.

The Deployment is created when missing and sized through its ``/scale`` subresource to
:func:`scaler.core.standby.balloon_gpus`. Its PriorityClass is created when missing if the RBAC
allows it (the shipped roles do not: ``deploy/rbac/priorityclass.yaml`` ships it); a PriorityClass
that exists with a non-negative value is refused - balloons that cannot be preempted would starve
the models they are meant to serve.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scaler.core.clock import Clock
from scaler.core.config import NodePool, Settings
from scaler.core.model import Decision
from scaler.core.standby import BalloonPlan, balloon_gpus
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj
from scaler.edges.kubernetes.cluster import BALLOON_LABEL, Cluster
from scaler.snapshot import SnapshotHolder

log = logging.getLogger("prewarm.kubernetes")

BALLOON_PRIORITY = -10
"""cluster-autoscaler ignores pods below --expendable-pods-priority-cutoff (default -10) for
scale-up: a lower value would make balloons useless there."""
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
TEMPLATE_HASH_ANNOTATION = "prewarm.io/template-hash"


def balloon_name(pool: str) -> str:
    return f"prewarm-balloon-{pool}"


def balloon_template(pool: NodePool) -> Obj:
    """The pod template of a pool's balloons (pause container, the pool's GPU shape)."""
    gpus = {pool.balloon.gpuResource: str(pool.gpusPerReplica)}
    return {
        "metadata": {"labels": {BALLOON_LABEL: pool.name, "app.kubernetes.io/name": "prewarm-balloon"}},
        "spec": {
            "priorityClassName": pool.balloon.priorityClassName,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "nodeSelector": dict(pool.balloon.nodeSelector),
            "tolerations": [dict(t) for t in pool.balloon.tolerations],
            "containers": [{
                "name": "pause",
                "image": PAUSE_IMAGE,
                # Extended resources: requests must equal limits.
                "resources": {"requests": {**gpus, "cpu": "1m", "memory": "8Mi"},
                              "limits": {**gpus, "memory": "8Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "runAsUser": 65535,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def template_hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def balloon_deployment(pool: NodePool, replicas: int) -> Obj:
    template = balloon_template(pool)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": balloon_name(pool.name), "namespace": pool.balloon.namespace,
            "labels": {BALLOON_LABEL: pool.name, "app.kubernetes.io/name": "prewarm-balloon",
                       "app.kubernetes.io/managed-by": "prewarm"},
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(template)},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {BALLOON_LABEL: pool.name}},
            # No surge: a template change must not hold twice the GPUs for a while.
            "strategy": {"type": "Recreate"},
            "template": template,
        },
    }


@dataclass
class BalloonStatus:
    """Last plan and outcome per pool, for metrics and logs."""

    plans: dict[str, BalloonPlan] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    scales_total: int = 0
    errors_total: int = 0
    last_error: str | None = None


class BalloonActuator:
    """An Actuator: sizes each pool's balloon Deployment to the forecast headroom. Leader only."""

    def __init__(self, clock: Clock, api: Api, cluster: Cluster, *, is_leader: Callable[[], bool]) -> None:
        self.clock = clock
        self.api = api
        self.cluster = cluster
        self.is_leader = is_leader
        self.status = BalloonStatus()
        self._priority_ok: set[str] = set()
        self._known_pools: dict[str, NodePool] = {}
        """Pools seen in earlier settings: a pool removed from the config is scaled to zero."""

    async def actuate(self, settings: Settings, decisions: Mapping[str, Decision], *, now: float) -> None:
        if not self.is_leader():
            return
        for pool in settings.nodePools:
            self._known_pools[pool.name] = pool
            capacity = self.cluster.pool_capacity(pool)
            plan = balloon_gpus(pool, settings.models, decisions, capacity=capacity)
            self.status.plans[pool.name] = plan
            await self._apply(pool, plan)
        current = {p.name for p in settings.nodePools}
        for name in [n for n in self._known_pools if n not in current]:
            await self._apply(self._known_pools.pop(name), None)

    async def follow(self, snapshots: SnapshotHolder) -> None:
        """Actuate on every published snapshot: its finished decisions, the numbers KEDA gets."""
        generation = snapshots.current.generation
        while not snapshots.closed:
            snap = await snapshots.wait_newer(generation, timeout=60.0)
            if snap.generation == generation:
                continue
            generation = snap.generation
            try:
                await self.actuate(snap.settings, snap.final_decisions(), now=snap.at)
            except Exception:  # a bug in planning must not stop the following ones
                self.status.errors_total += 1
                log.exception("balloon actuation failed")

    async def _apply(self, pool: NodePool, plan: BalloonPlan | None) -> None:
        try:
            replicas = await self.api.call(self.apply_plan, pool, plan)
        except KubeApiError as exc:
            self.status.errors_total += 1
            self.status.last_error = f"{pool.name}: {exc}"
            log.warning("balloons of pool %s: %s", pool.name, exc)
            return
        if replicas is not None:
            self.status.replicas[pool.name] = replicas

    def apply_plan(self, pool: NodePool, plan: BalloonPlan | None) -> int | None:
        """Create what is missing and scale (blocking). The replicas set, or None when skipped.

        ``plan`` None: the pool left the config; its balloons go to zero (never deleted: an
        operator may still want to inspect them).
        """
        deployment = self._get_deployment(pool)
        target = plan.pods if plan is not None else 0
        if deployment is None:
            if target == 0:
                return None  # nothing to hold and nothing to shrink: create nothing
            if not self._ensure_priority_class(pool):
                return None
            if not self.is_leader():
                return None
            self.api.create(f"/apis/apps/v1/namespaces/{pool.balloon.namespace}/deployments",
                            balloon_deployment(pool, target))
            log.info("created balloon deployment %s/%s with %d pods",
                     pool.balloon.namespace, balloon_name(pool.name), target)
            self.status.scales_total += 1
            return target
        if plan is not None:
            self._update_template(pool, deployment)
        current = int((deployment.get("spec") or {}).get("replicas") or 0)
        if plan is not None and plan.hold:
            target = max(current, target)  # missing data never shrinks the pre-warmed capacity
        if target != current and self.is_leader():
            self._scale(pool, target)
            log.info("balloons of pool %s: %d -> %d pods (%s)", pool.name, current, target,
                     _describe(plan))
        return target

    def _get_deployment(self, pool: NodePool) -> Obj | None:
        try:
            return self.api.get(self._path(pool))
        except KubeApiError as exc:
            if exc.not_found:
                return None
            raise

    def _path(self, pool: NodePool) -> str:
        return f"/apis/apps/v1/namespaces/{pool.balloon.namespace}/deployments/{balloon_name(pool.name)}"

    def _scale(self, pool: NodePool, replicas: int) -> None:
        self.api.merge_patch(self._path(pool) + "/scale", {"spec": {"replicas": replicas}})
        self.status.scales_total += 1

    def _update_template(self, pool: NodePool, deployment: Obj) -> None:
        """Patch the pod template when the pool's config changed (nodeSelector, GPUs, ...)."""
        annotations = (deployment.get("metadata") or {}).get("annotations") or {}
        template = balloon_template(pool)
        digest = template_hash(template)
        if annotations.get(TEMPLATE_HASH_ANNOTATION) == digest or not self.is_leader():
            return
        self.api.merge_patch(self._path(pool), {
            "metadata": {"annotations": {TEMPLATE_HASH_ANNOTATION: digest}},
            "spec": {"template": template},
        })
        log.info("updated the balloon pod template of pool %s", pool.name)

    def _ensure_priority_class(self, pool: NodePool) -> bool:
        name = pool.balloon.priorityClassName
        if name in self._priority_ok:
            return True
        path = f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}"
        existing: Obj | None
        try:
            existing = self.api.get(path)
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            existing = self._create_priority_class(name)
        if existing is None:
            return False
        value = int(existing.get("value", 0))
        if value >= 0:
            self._refuse(pool, f"PriorityClass {name} has value {value}; balloons need a negative one")
            return False
        self._priority_ok.add(name)
        return True

    def _create_priority_class(self, name: str) -> Obj | None:
        body: Obj = {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "prewarm"}},
            "value": BALLOON_PRIORITY, "globalDefault": False, "preemptionPolicy": "Never",
            "description": "prewarm balloon pods: pre-warmed GPU capacity, preempted by any real pod.",
        }
        try:
            return self.api.create("/apis/scheduling.k8s.io/v1/priorityclasses", body)
        except KubeApiError as exc:
            if exc.conflict:
                return self.api.get(f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}")
            if exc.forbidden:
                self._refuse_name(name, "PriorityClass missing and not allowed to create it; "
                                        "apply deploy/rbac/priorityclass.yaml")
                return None
            raise

    def _refuse(self, pool: NodePool, message: str) -> None:
        self._refuse_name(pool.balloon.priorityClassName, message)

    def _refuse_name(self, name: str, message: str) -> None:
        self.status.errors_total += 1
        self.status.last_error = message
        log.error("balloons disabled (%s): %s", name, message)


def _describe(plan: BalloonPlan | None) -> str:
    if plan is None:
        return "pool removed from the config"
    text = f"{plan.wanted_gpus} GPUs wanted, {plan.free_gpus} free"
    if plan.capped:
        text += ", capped by maxBalloonGpus"
    if plan.hold:
        text += ", held: a model of the pool has no valid decision"
    return text
