"""Pods and Nodes, reduced to what cold-start learning and GPU accounting need.

Fed by two list+watches (all pods, all nodes), on the event loop. Every replica keeps its own
copy; on start it is rebuilt from the existing Pods and Nodes plus the persisted summary
(:mod:`scaler.edges.kubernetes.state`), so a restart forgets nothing that was learned.

Which pods are a model's: those in the target Deployment's namespace matching its selector (read
from the Deployment). A startup becomes a sample when the pod is Ready; it is kept (frozen) when
the pod goes away, so scale-downs do not erase what scale-ups taught.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.edges.kubernetes.api import Api, KubeApiError, Obj, parse_time, quantity_int
from scaler.core.coldstart import (
    MAX_SAMPLES,
    DurationSample,
    NodeTimeline,
    PodTimeline,
    StartupSample,
    estimate_cold_start,
    node_sample,
    recent,
    recent_durations,
    startup_sample,
)
from scaler.core.config import ModelSettings, NodePool, Settings
from scaler.core.model import ColdStart
from scaler.core.standby import NodeGpus, PoolCapacity, has_spare, pool_capacity

log = logging.getLogger("prewarm.kubernetes")

BALLOON_LABEL = "prewarm.io/balloon"
"""Label of balloon pods (value: the pool name): their GPUs are spare for real pods."""
SELECTOR_REFRESH_SECONDS = 60.0
"""How often target Deployments are re-read (a selector rarely changes; a new model appears on
config reload, which refreshes at once)."""
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodView:
    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    created: float
    scheduled: float | None
    containers_ready: float | None
    ready: float | None
    """Ready=True transition time (None while not Ready)."""
    node: str | None
    phase: str
    requests: Mapping[str, int]
    """Extended-resource requests (``nvidia.com/gpu`` ...) summed over containers."""
    restarts: int

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True)
class NodeView:
    name: str
    labels: Mapping[str, str]
    created: float
    ready: bool
    ready_since: float | None
    unschedulable: bool
    allocatable: Mapping[str, int]


def _conditions(status: Obj) -> dict[str, Obj]:
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, dict)}


def _true_since(conditions: Mapping[str, Obj], kind: str) -> float | None:
    c = conditions.get(kind)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def pod_view(obj: Obj) -> PodView | None:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    created = parse_time(meta.get("creationTimestamp"))
    if created is None or not meta.get("uid"):
        return None
    conditions = _conditions(status)
    requests: dict[str, int] = {}
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in merged.items():
            if "/" in name:  # extended resources only (GPUs); cpu/memory are not tracked
                requests[name] = requests.get(name, 0) + quantity_int(value)
    restarts = sum(int(s.get("restartCount", 0)) for s in status.get("containerStatuses") or [])
    return PodView(
        uid=str(meta["uid"]), namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}), created=created,
        scheduled=_true_since(conditions, "PodScheduled"),
        containers_ready=_true_since(conditions, "ContainersReady"),
        ready=_true_since(conditions, "Ready"), node=spec.get("nodeName") or None,
        phase=str(status.get("phase", "Pending")), requests=requests, restarts=restarts,
    )


def node_view(obj: Obj) -> NodeView | None:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    created = parse_time(meta.get("creationTimestamp"))
    if created is None or not meta.get("name"):
        return None
    ready_since = _true_since(_conditions(status), "Ready")
    allocatable = {k: quantity_int(v) for k, v in (status.get("allocatable") or {}).items() if "/" in k}
    return NodeView(
        name=str(meta["name"]), labels=dict(meta.get("labels") or {}), created=created,
        ready=ready_since is not None, ready_since=ready_since,
        unschedulable=bool((obj.get("spec") or {}).get("unschedulable")), allocatable=allocatable,
    )


@dataclass(frozen=True)
class Selector:
    """A Deployment's label selector (matchLabels + matchExpressions)."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    expressions: tuple[tuple[str, str, frozenset[str]], ...] = ()

    @classmethod
    def from_obj(cls, obj: Obj) -> Selector:
        expressions = tuple(
            (str(e.get("key")), str(e.get("operator")), frozenset(str(v) for v in e.get("values") or []))
            for e in obj.get("matchExpressions") or []
        )
        return cls(match_labels=dict(obj.get("matchLabels") or {}), expressions=expressions)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if not self.match_labels and not self.expressions:
            return False  # an empty selector would claim every pod: never a model's
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(_expression_matches(labels, e) for e in self.expressions)


def _expression_matches(labels: Mapping[str, str], expression: tuple[str, str, frozenset[str]]) -> bool:
    key, operator, values = expression
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def node_in_pool(node: NodeView, pool: NodePool) -> bool:
    selector = pool.balloon.nodeSelector
    return bool(selector) and all(node.labels.get(k) == v for k, v in selector.items())


class _PodsHandler:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def replace(self, items: list[Obj]) -> None:
        self.cluster.replace_pods(items)

    def apply(self, event_type: str, obj: Obj) -> None:
        self.cluster.apply_pod(event_type, obj)


class _NodesHandler:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def replace(self, items: list[Obj]) -> None:
        self.cluster.replace_nodes(items)

    def apply(self, event_type: str, obj: Obj) -> None:
        self.cluster.apply_node(event_type, obj)


class Cluster:
    """The daemon's view of Pods and Nodes; a ColdStartProvider and the pools' GPU accounting.

    Mutated only on the event loop (by the watches); read by the engine on the loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pods: dict[str, PodView] = {}
        self.nodes: dict[str, NodeView] = {}
        self.selectors: dict[tuple[str, str], Selector] = {}
        self.pods_handler = _PodsHandler(self)
        self.nodes_handler = _NodesHandler(self)
        self._first_ready: dict[str, float] = {}
        self._node_first_ready: dict[str, float] = {}
        self._frozen: dict[str, dict[str, StartupSample]] = {}
        """Per model: samples of pods that are gone, and those loaded from the persisted state."""
        self._frozen_nodes: dict[str, dict[str, DurationSample]] = {}
        self.changed = False
        """New samples since the last save of the persisted state."""
        self._targets_changed = asyncio.Event()

    # --- settings and selectors -------------------------------------------------------------

    def set_settings(self, settings: Settings) -> None:
        old = self.targets()
        self.settings = settings
        if self.targets() != old:
            self._targets_changed.set()

    def targets(self) -> set[tuple[str, str]]:
        return {(m.target.namespace, m.target.deployment) for m in self.settings.models
                if m.target is not None}

    def refresh_selectors(self, api: Api) -> None:
        """Read each target Deployment's selector (blocking; run in a thread)."""
        found: dict[tuple[str, str], Selector] = {}
        for namespace, name in sorted(self.targets()):
            try:
                deployment = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            except KubeApiError as exc:
                if exc.not_found:
                    log.warning("target deployment %s/%s not found; its cold start is not learned",
                                namespace, name)
                    continue
                raise
            selector = (deployment.get("spec") or {}).get("selector") or {}
            found[(namespace, name)] = Selector.from_obj(selector)
        self.selectors = found

    async def keep_selectors_fresh(self, api: Api, period_seconds: float = SELECTOR_REFRESH_SECONDS) -> None:
        while True:
            self._targets_changed.clear()
            try:
                await api.call(self.refresh_selectors, api)
            except Exception as exc:  # any API failure: keep the old selectors
                log.warning("reading target deployments failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._targets_changed.wait(), period_seconds)

    def model_pods(self, model: ModelSettings) -> list[PodView]:
        selector = self._selector(model)
        if selector is None or model.target is None:
            return []
        namespace = model.target.namespace
        return [p for p in self.pods.values() if p.namespace == namespace and selector.matches(p.labels)]

    def _selector(self, model: ModelSettings) -> Selector | None:
        if model.target is None:
            return None
        return self.selectors.get((model.target.namespace, model.target.deployment))

    def _models_of(self, pod: PodView) -> list[ModelSettings]:
        out = []
        for model in self.settings.models:
            selector = self._selector(model)
            if (selector is not None and model.target is not None
                    and model.target.namespace == pod.namespace and selector.matches(pod.labels)):
                out.append(model)
        return out

    # --- watch handlers ---------------------------------------------------------------------

    def replace_pods(self, items: list[Obj]) -> None:
        views = [v for v in (pod_view(o) for o in items) if v is not None]
        fresh = {v.uid: v for v in views}
        for uid in set(self.pods) - set(fresh):
            self._forget_pod(self.pods[uid])
        self.pods = fresh
        for view in views:
            self._note_ready(view)

    def apply_pod(self, event_type: str, obj: Obj) -> None:
        view = pod_view(obj)
        if view is None:
            return
        if event_type == "DELETED":
            self._forget_pod(self.pods.pop(view.uid, view))
            return
        self.pods[view.uid] = view
        self._note_ready(view)

    def replace_nodes(self, items: list[Obj]) -> None:
        fresh = {v.name: v for v in (node_view(o) for o in items) if v is not None}
        for name in set(self.nodes) - set(fresh):
            self._forget_node(self.nodes[name])
        self.nodes = fresh
        for view in fresh.values():
            self._note_node_ready(view)

    def apply_node(self, event_type: str, obj: Obj) -> None:
        view = node_view(obj)
        if view is None:
            return
        if event_type == "DELETED":
            self._forget_node(self.nodes.pop(view.name, view))
            return
        self.nodes[view.name] = view
        self._note_node_ready(view)

    def _note_ready(self, pod: PodView) -> None:
        # The first Ready seen is the startup; later transitions are restarts or probe flaps.
        # A pod found already Ready after restarts has lost its first Ready: not a sample.
        if pod.ready is not None and pod.uid not in self._first_ready and pod.restarts == 0:
            self._first_ready[pod.uid] = pod.ready
            self.changed = True

    def _note_node_ready(self, node: NodeView) -> None:
        if node.ready_since is not None and node.name not in self._node_first_ready:
            self._node_first_ready[node.name] = node.ready_since
            self.changed = True

    def _forget_pod(self, pod: PodView) -> None:
        sample = self._sample(pod)
        if sample is not None:
            for model in self._models_of(pod):
                bucket = self._frozen.setdefault(model.name, {})
                bucket[sample.uid] = sample
                if len(bucket) > 2 * MAX_SAMPLES:
                    self._frozen[model.name] = {s.uid: s for s in recent(bucket.values())}
        self._first_ready.pop(pod.uid, None)

    def _forget_node(self, node: NodeView) -> None:
        sample = self._node_sample(node)
        if sample is not None:
            for pool in self.settings.nodePools:
                if node_in_pool(node, pool):
                    bucket = self._frozen_nodes.setdefault(pool.name, {})
                    bucket[sample.key] = sample
                    if len(bucket) > 2 * MAX_SAMPLES:
                        self._frozen_nodes[pool.name] = {
                            s.key: s for s in recent_durations(bucket.values())}
        self._node_first_ready.pop(node.name, None)

    # --- timelines and samples --------------------------------------------------------------

    def timeline(self, pod: PodView) -> PodTimeline:
        node = self.nodes.get(pod.node) if pod.node else None
        return PodTimeline(
            uid=pod.uid, created=pod.created, scheduled=pod.scheduled,
            node_created=node.created if node else None,
            node_ready=self._node_first_ready.get(node.name) if node else None,
            containers_ready=pod.containers_ready, ready=self._first_ready.get(pod.uid),
        )

    def _sample(self, pod: PodView) -> StartupSample | None:
        return startup_sample(self.timeline(pod))

    def _node_sample(self, node: NodeView) -> DurationSample | None:
        ready = self._node_first_ready.get(node.name)
        return node_sample(NodeTimeline(name=node.name, created=node.created, ready=ready))

    def startup_samples(self, model: ModelSettings) -> list[StartupSample]:
        live = [s for s in (self._sample(p) for p in self.model_pods(model)) if s is not None]
        return recent([*self._frozen.get(model.name, {}).values(), *live])

    def node_samples(self, pool: NodePool) -> list[DurationSample]:
        live = [s for s in (self._node_sample(n) for n in self.nodes.values() if node_in_pool(n, pool))
                if s is not None]
        return recent_durations([*self._frozen_nodes.get(pool.name, {}).values(), *live])

    def pool(self, name: str | None) -> NodePool | None:
        return next((p for p in self.settings.nodePools if p.name == name), None)

    # --- ColdStartProvider ------------------------------------------------------------------

    def cold_start(self, model: ModelSettings, *, now: float) -> ColdStart | None:
        """Learned estimate (or the initial value with ``learned=False``); None when not learning."""
        settings = model.policy.coldStart
        if not settings.learn:
            return None
        pool = self.pool(model.nodePool)
        nodes = self.node_samples(pool) if pool is not None else []
        return estimate_cold_start(self.startup_samples(model), settings, now=now, nodes=nodes)

    # --- GPU accounting ---------------------------------------------------------------------

    def pool_capacity(self, pool: NodePool) -> PoolCapacity:
        """GPUs of the pool's Ready, schedulable nodes; pending model pods take free slots first."""
        resource = pool.balloon.gpuResource
        per_node: dict[str, NodeGpus] = {
            n.name: NodeGpus(allocatable=n.allocatable.get(resource, 0))
            for n in self.nodes.values() if n.ready and not n.unschedulable and node_in_pool(n, pool)
        }
        pending = 0
        pool_models = [m for m in self.settings.models if m.nodePool == pool.name]
        for pod in self.pods.values():
            gpus = pod.requests.get(resource, 0)
            if gpus <= 0 or pod.terminal:
                continue
            if pod.node is None:
                if any(self._pod_of(pod, m) for m in pool_models):
                    pending += gpus
                continue
            node = per_node.get(pod.node)
            if node is None:
                continue
            if BALLOON_LABEL in pod.labels:
                per_node[pod.node] = NodeGpus(node.allocatable, node.used, node.balloon + gpus)
            else:
                per_node[pod.node] = NodeGpus(node.allocatable, node.used + gpus, node.balloon)
        return pool_capacity(per_node.values(), gpus_per_replica=pool.gpusPerReplica,
                             pending_gpus=pending)

    def _pod_of(self, pod: PodView, model: ModelSettings) -> bool:
        selector = self._selector(model)
        return (selector is not None and model.target is not None
                and pod.namespace == model.target.namespace and selector.matches(pod.labels))

    def pool_has_spare(self, model: ModelSettings) -> bool | None:
        """Whether a new replica of ``model`` finds a GPU slot now (balloon-held ones count)."""
        pool = self.pool(model.nodePool)
        if pool is None:
            return None
        return has_spare(self.pool_capacity(pool), pool.gpusPerReplica)

    # --- persisted summary ------------------------------------------------------------------

    def export_samples(self) -> tuple[dict[str, list[StartupSample]], dict[str, list[DurationSample]]]:
        models = {m.name: self.startup_samples(m) for m in self.settings.models}
        pools = {p.name: self.node_samples(p) for p in self.settings.nodePools}
        return ({k: v for k, v in models.items() if v}, {k: v for k, v in pools.items() if v})

    def load_samples(
        self,
        models: Mapping[str, Iterable[StartupSample]],
        pools: Mapping[str, Iterable[DurationSample]],
    ) -> None:
        """Merge persisted samples (a live pod's own sample wins: same uid, recomputed)."""
        for name, samples in models.items():
            bucket = self._frozen.setdefault(name, {})
            for s in samples:
                bucket.setdefault(s.uid, s)
        for name, durations in pools.items():
            nodes = self._frozen_nodes.setdefault(name, {})
            for d in durations:
                nodes.setdefault(d.key, d)

    def summary(self) -> dict[str, Any]:
        return {"pods": len(self.pods), "nodes": len(self.nodes), "targets": len(self.selectors)}
