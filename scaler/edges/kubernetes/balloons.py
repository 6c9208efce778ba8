"""Balloon Deployments: pre-warmed GPU capacity per node pool (leader only).

Per pool, a Deployment ``prewarm-balloon-<pool>`` of pause pods, each requesting one replica's
GPUs (``gpusPerReplica``) on the pool's nodes (nodeSelector, tolerations) at a negative priority
(``-10`` by default, cluster-autoscaler's overprovisioning value: still above its default
``--expendable-pods-priority-cutoff``, so it scales up for them). The autoscaler adds nodes for
pending balloons; a real pod preempts a balloon and starts on a Ready node.

The chart (or kustomize) creates each Deployment with 0 replicas from the same config
(:func:`balloon_deployment` is the reference it renders); the daemon only sizes it through its
``/scale`` subresource to :func:`scaler.core.standby.balloon_gpus`. It creates nothing and never
edits a pod template: a right to create or rewrite Deployments would let it mount any Secret of
the namespace, so the Role grants ``get`` and ``/scale`` on the balloons' names only. A missing
Deployment, one the Role does not name, or a pod template that no longer matches the config is
reported (log, ``prewarm_balloon_missing`` / ``prewarm_balloon_template_drift``, a Warning
Event) and left alone. A PriorityClass that is missing or not negative stops scale-ups: balloons
that cannot be preempted would starve the models they are meant to serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scaler.core.clock import Clock
from scaler.core.config import NodePool, Settings
from scaler.core.model import Decision
from scaler.core.standby import BalloonPlan, balloon_gpus
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj, format_time
from scaler.edges.kubernetes.cluster import BALLOON_LABEL, Cluster
from scaler.snapshot import SnapshotHolder

log = logging.getLogger("prewarm.kubernetes")

BALLOON_PRIORITY = -10
"""cluster-autoscaler ignores pods below --expendable-pods-priority-cutoff (default -10) for
scale-up: a lower value would make balloons useless there."""
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
MISSING_REASON = "BalloonDeploymentMissing"
DRIFT_REASON = "BalloonTemplateDrift"


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


def balloon_deployment(pool: NodePool, replicas: int = 0) -> Obj:
    """The Deployment the chart and kustomize render for ``pool`` (tests/deploy hold them to it)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": balloon_name(pool.name), "namespace": pool.balloon.namespace,
            "labels": {BALLOON_LABEL: pool.name},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {BALLOON_LABEL: pool.name}},
            # No surge: a template change must not hold twice the GPUs for a while.
            "strategy": {"type": "Recreate"},
            "template": balloon_template(pool),
        },
    }


EXACT_MAPS = frozenset({"labels", "nodeSelector", "requests", "limits"})
"""Maps the API server never adds keys to: an extra key there is drift, not a default."""


def contains(live: object, wanted: object, key: str = "") -> bool:
    """Whether ``live`` (as the API server returns it, defaults filled in) has every field of
    ``wanted``: a comparison that ignores what the server adds (imagePullPolicy, dnsPolicy...)."""
    if live is None and wanted in ({}, []):
        return True  # the server drops empty maps and lists
    if isinstance(wanted, dict):
        if not isinstance(live, dict) or (key in EXACT_MAPS and set(live) != set(wanted)):
            return False
        return all(contains(live.get(k), v, k) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(live, list) and len(live) == len(wanted)
                and all(contains(a, b) for a, b in zip(live, wanted, strict=True)))
    return live == wanted


@dataclass
class BalloonStatus:
    """Last plan and outcome per pool, for metrics and logs."""

    plans: dict[str, BalloonPlan] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    scales_total: int = 0
    errors_total: int = 0
    last_error: str | None = None
    missing: dict[str, str] = field(default_factory=dict)
    """Pools whose Deployment cannot be scaled (not found, or not named in the Role): why."""
    drifted: set[str] = field(default_factory=set)
    """Pools whose Deployment's pod template differs from the config's."""
    events_total: int = 0


class BalloonActuator:
    """An Actuator: sizes each pool's balloon Deployment to the forecast headroom. Leader only."""

    def __init__(self, clock: Clock, api: Api, cluster: Cluster, *, is_leader: Callable[[], bool],
                 instance: str = "") -> None:
        self.clock = clock
        self.api = api
        self.cluster = cluster
        self.is_leader = is_leader
        self.instance = instance
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
            self.status.plans.pop(name, None)
            self.status.missing.pop(name, None)
            self.status.drifted.discard(name)
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
        """Scale the pool's Deployment (blocking). The replicas set, or None when skipped.

        ``plan`` None: the pool left the config; its balloons go to zero (never deleted: an
        operator may still want to inspect them, and the chart deletes what it no longer renders).
        """
        try:
            deployment = self.api.get(self._path(pool))
        except KubeApiError as exc:
            if not (exc.not_found or exc.forbidden):
                raise
            why = ("not found: the chart or kustomize creates it from nodePools; re-render and apply"
                   if exc.not_found else
                   "not allowed to read it: the Role names one balloon Deployment per pool; re-render "
                   "the RBAC from this config")
            if plan is not None:
                self._report_missing(pool, why)
            return None
        self._found(pool)
        template = (deployment.get("spec") or {}).get("template") or {}
        if plan is not None:
            self._check_template(pool, template)
        current = int((deployment.get("spec") or {}).get("replicas") or 0)
        target = plan.pods if plan is not None else 0
        if plan is not None and plan.hold:
            target = max(current, target)  # missing data never shrinks the pre-warmed capacity
        if target > current and not self._priority_ok_for(pool, template):
            return None
        if target != current and self.is_leader():
            self._scale(pool, target)
            log.info("balloons of pool %s: %d -> %d pods (%s)", pool.name, current, target,
                     _describe(plan))
        return target

    def _path(self, pool: NodePool) -> str:
        return f"/apis/apps/v1/namespaces/{pool.balloon.namespace}/deployments/{balloon_name(pool.name)}"

    def _scale(self, pool: NodePool, replicas: int) -> None:
        self.api.merge_patch(self._path(pool) + "/scale", {"spec": {"replicas": replicas}})
        self.status.scales_total += 1

    def _report_missing(self, pool: NodePool, why: str) -> None:
        """Once per episode: an error log and a Warning Event; the gauge stays up meanwhile."""
        if self.status.missing.get(pool.name) == why:
            return
        self.status.missing[pool.name] = why
        self.status.errors_total += 1
        self.status.last_error = f"{pool.name}: {why}"
        message = (f"balloons of pool {pool.name} are off: Deployment "
                   f"{pool.balloon.namespace}/{balloon_name(pool.name)} {why}")
        log.error("%s", message)
        self._event(pool, MISSING_REASON, message)

    def _found(self, pool: NodePool) -> None:
        if self.status.missing.pop(pool.name, None) is not None:
            log.info("balloon deployment %s/%s found; balloons of pool %s are on",
                     pool.balloon.namespace, balloon_name(pool.name), pool.name)

    def _check_template(self, pool: NodePool, template: Obj) -> None:
        """Report (never rewrite) a pod template that differs from the config's nodePools entry."""
        if contains(template, balloon_template(pool)):
            if pool.name in self.status.drifted:
                self.status.drifted.discard(pool.name)
                log.info("balloon pod template of pool %s matches the config again", pool.name)
            return
        if pool.name in self.status.drifted:
            return
        self.status.drifted.add(pool.name)
        message = (f"the pod template of Deployment {pool.balloon.namespace}/{balloon_name(pool.name)} "
                   f"differs from nodePools[{pool.name}] (nodeSelector, tolerations, GPUs, priority): "
                   "re-render the chart or kustomize from this config; balloons keep the template in place")
        log.warning("%s", message)
        self._event(pool, DRIFT_REASON, message)

    def _priority_ok_for(self, pool: NodePool, template: Obj) -> bool:
        """The class the live pod template names exists and is negative (checked once per name)."""
        name = str((template.get("spec") or {}).get("priorityClassName") or "")
        if name and name in self._priority_ok:
            return True
        if not name:
            self._refuse(pool, "the balloon pod template names no PriorityClass; balloons need a negative one")
            return False
        try:
            existing = self.api.get(f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}")
        except KubeApiError as exc:
            if not (exc.not_found or exc.forbidden):
                raise
            self._refuse(pool, f"PriorityClass {name} cannot be read ({exc.reason or exc.status}); "
                               "apply deploy/rbac/priorityclass.yaml or the chart's")
            return False
        value = int(existing.get("value", 0))
        if value >= 0:
            self._refuse(pool, f"PriorityClass {name} has value {value}; balloons need a negative one")
            return False
        self._priority_ok.add(name)
        return True

    def _refuse(self, pool: NodePool, message: str) -> None:
        self.status.errors_total += 1
        self.status.last_error = message
        log.error("balloons of pool %s not scaled up: %s", pool.name, message)

    def _event(self, pool: NodePool, reason: str, message: str) -> None:
        """A Warning Event on the balloon Deployment (``kubectl describe`` and ``get events`` show it).

        Blocking. A failure to write it is logged, never raised: the log and the gauge remain.
        """
        now = self.clock.now()
        name = balloon_name(pool.name)
        body: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": pool.balloon.namespace},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                               "namespace": pool.balloon.namespace},
            "reason": reason, "message": message[:1024], "type": "Warning",
            "source": {"component": "prewarm"},
            # No eventTime: a core/v1 Event with one must also carry action and series.
            "firstTimestamp": format_time(now), "lastTimestamp": format_time(now), "count": 1,
            "reportingComponent": "prewarm", "reportingInstance": self.instance,
        }
        try:
            self.api.create(f"/api/v1/namespaces/{pool.balloon.namespace}/events", body)
        except KubeApiError as exc:
            log.warning("cannot create the %s event: %s", reason, exc)
            return
        self.status.events_total += 1


def _describe(plan: BalloonPlan | None) -> str:
    if plan is None:
        return "pool removed from the config"
    text = f"{plan.wanted_gpus} GPUs wanted, {plan.free_gpus} free"
    if plan.capped:
        text += ", capped by maxBalloonGpus"
    if plan.hold:
        text += ", held: a model of the pool has no valid decision"
    return text
