"""Pods and Nodes as the scaler needs them: cold-start sample bookkeeping and GPU accounting.

Pure: the Kubernetes edge parses API objects into :class:`PodView` / :class:`NodeView` and feeds
them in (``put_pod``, ``drop_pod`` ...); nothing here reads the API or a clock. What the engine
reads is the immutable :class:`ClusterView` that :meth:`Fleet.view` builds, so the engine never
calls into the edge.

Which pods are a model's: those in the target Deployment's namespace matching its selector (the
edge reads selectors from the Deployments). A startup becomes a sample when the pod is Ready; it
is kept (frozen) when the pod goes away, so scale-downs do not erase what scale-ups taught.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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
from scaler.core.workload import BALLOON_LABEL, NodeView, PodView, Selector, node_in_pool

__all__ = ["BALLOON_LABEL", "ClusterView", "Fleet", "NodeView", "PodView", "Published", "Selector",
           "node_in_pool"]

T = TypeVar("T")



@dataclass(frozen=True)
class ClusterView:
    """What the engine reads from the cluster, built in one go: never a callback into the edge.

    ``cold_starts``: per model that learns, the learned estimate (``learned=False`` until enough
    samples; the configured values then). ``spare``: per model with a node pool, whether a new
    replica finds a GPU now (absent: unknown, so the node wait counts). ``capacity``: per pool.
    """

    at: float = 0.0
    cold_starts: Mapping[str, ColdStart] = field(default_factory=dict)
    spare: Mapping[str, bool] = field(default_factory=dict)
    capacity: Mapping[str, PoolCapacity] = field(default_factory=dict)
    ready: Mapping[str, int] = field(default_factory=dict)
    """Per model with a target Deployment: its Ready pods."""


class Published(Generic[T]):
    """The latest immutable value one side publishes and the other reads (single event loop)."""

    def __init__(self, initial: T) -> None:
        self.current = initial

    def publish(self, value: T) -> None:
        self.current = value


class Fleet:
    """Pods, Nodes and selectors as last seen; learned samples; GPU accounting per pool.

    Mutated by the Kubernetes edge on the event loop; :meth:`view` is what it publishes.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pods: dict[str, PodView] = {}
        self.nodes: dict[str, NodeView] = {}
        self.selectors: dict[tuple[str, str], Selector] = {}
        self._first_ready: dict[str, float] = {}
        self._node_first_ready: dict[str, float] = {}
        self._frozen: dict[str, dict[str, StartupSample]] = {}
        """Per model: samples of pods that are gone, and those loaded from the persisted state."""
        self._frozen_nodes: dict[str, dict[str, DurationSample]] = {}
        self.changed = False
        """New samples since the last save of the persisted state."""
        self.revision = 0
        """Bumped on every change that can change :meth:`view` (the edge republishes then)."""

    # --- settings and selectors -------------------------------------------------------------

    def set_settings(self, settings: Settings) -> bool:
        """Swap settings; True when the set of target Deployments changed (re-read selectors)."""
        old = self.targets()
        self.settings = settings
        self.revision += 1
        return self.targets() != old

    def targets(self) -> set[tuple[str, str]]:
        return {(m.target.namespace, m.target.deployment) for m in self.settings.models
                if m.target is not None}

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

    # --- what the watches saw ------------------------------------------------------------------

    def reset_pods(self, views: Iterable[PodView]) -> None:
        self.revision += 1
        fresh = {v.uid: v for v in views}
        for uid in set(self.pods) - set(fresh):
            self._forget_pod(self.pods[uid])
        self.pods = fresh
        for view in fresh.values():
            self._note_ready(view)

    def put_pod(self, view: PodView) -> None:
        self.revision += 1
        self.pods[view.uid] = view
        self._note_ready(view)

    def drop_pod(self, view: PodView) -> None:
        self.revision += 1
        self._forget_pod(self.pods.pop(view.uid, view))

    def reset_nodes(self, views: Iterable[NodeView]) -> None:
        self.revision += 1
        fresh = {v.name: v for v in views}
        for name in set(self.nodes) - set(fresh):
            self._forget_node(self.nodes[name])
        self.nodes = fresh
        for view in fresh.values():
            self._note_node_ready(view)

    def put_node(self, view: NodeView) -> None:
        self.revision += 1
        self.nodes[view.name] = view
        self._note_node_ready(view)

    def drop_node(self, view: NodeView) -> None:
        self.revision += 1
        self._forget_node(self.nodes.pop(view.name, view))

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

    def startup_samples(self, model: ModelSettings, pods: Iterable[PodView] | None = None) -> list[StartupSample]:
        """``pods``: the model's pods when already known (``pods_by_model``), else looked up."""
        mine = self.model_pods(model) if pods is None else pods
        live = [s for s in (self._sample(p) for p in mine) if s is not None]
        return recent([*self._frozen.get(model.name, {}).values(), *live])

    def node_samples(self, pool: NodePool) -> list[DurationSample]:
        live = [s for s in (self._node_sample(n) for n in self.nodes.values() if node_in_pool(n, pool))
                if s is not None]
        return recent_durations([*self._frozen_nodes.get(pool.name, {}).values(), *live])

    def pool(self, name: str | None) -> NodePool | None:
        return next((p for p in self.settings.nodePools if p.name == name), None)

    # --- learned cold starts ----------------------------------------------------------------

    def cold_start(self, model: ModelSettings, *, now: float, pods: Iterable[PodView] | None = None,
                   nodes: list[DurationSample] | None = None) -> ColdStart | None:
        """Learned estimate (or the initial value with ``learned=False``); None when not learning.
        ``pods``/``nodes``: the model's pods and its pool's node samples, when already known."""
        settings = model.policy.coldStart
        if not settings.learn:
            return None
        if nodes is None:
            pool = self.pool(model.nodePool)
            nodes = self.node_samples(pool) if pool is not None else []
        return estimate_cold_start(self.startup_samples(model, pods), settings, now=now, nodes=nodes)

    def pods_by_model(self) -> dict[str, list[PodView]]:
        """Every model's pods in one pass over the pods: a selector's first matchLabels pair picks
        the candidates, so thousands of models in one namespace cost pods + matches, not their
        product (what ``model_pods`` per model would cost)."""
        by_label: dict[tuple[str, str, str], list[PodView]] = {}
        by_namespace: dict[str, list[PodView]] = {}
        for pod in self.pods.values():
            by_namespace.setdefault(pod.namespace, []).append(pod)
            for key, value in pod.labels.items():
                by_label.setdefault((pod.namespace, key, value), []).append(pod)
        out: dict[str, list[PodView]] = {}
        for m in self.settings.models:
            selector = self._selector(m)
            if selector is None or m.target is None:
                continue
            namespace = m.target.namespace
            if selector.match_labels:
                key, value = next(iter(selector.match_labels.items()))
                candidates = by_label.get((namespace, key, value), [])
            else:
                candidates = by_namespace.get(namespace, [])
            out[m.name] = [p for p in candidates if selector.matches(p.labels)]
        return out

    # --- GPU accounting ---------------------------------------------------------------------

    def pool_capacity(self, pool: NodePool, members: set[str] | None = None) -> PoolCapacity:
        """GPUs of the pool's Ready, schedulable nodes; pending model pods take free slots first.
        ``members``: uids of the pool's models' pods, when already known."""
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
                mine = pod.uid in members if members is not None else any(self._pod_of(pod, m) for m in pool_models)
                if mine:
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

    def view(self, *, now: float) -> ClusterView:
        """The immutable view the engine reads: pods are matched to models once, and each pool's
        capacity and node samples are counted once, whatever the number of models."""
        pods = self.pods_by_model()
        members: dict[str, set[str]] = {}
        for m in self.settings.models:
            if m.nodePool is not None:
                members.setdefault(m.nodePool, set()).update(p.uid for p in pods.get(m.name, ()))
        capacity = {p.name: self.pool_capacity(p, members.get(p.name, set())) for p in self.settings.nodePools}
        node_samples = {p.name: self.node_samples(p) for p in self.settings.nodePools}
        colds: dict[str, ColdStart] = {}
        spare: dict[str, bool] = {}
        ready: dict[str, int] = {}
        for m in self.settings.models:
            if m.name in pods:
                ready[m.name] = sum(1 for p in pods[m.name] if p.ready is not None and not p.terminal)
            cold = self.cold_start(m, now=now, pods=pods.get(m.name, []),
                                   nodes=node_samples.get(m.nodePool or "", []))
            if cold is not None:
                colds[m.name] = cold
            pool = self.pool(m.nodePool)
            room = has_spare(capacity.get(pool.name), pool.gpusPerReplica) if pool else None
            if room is not None:
                spare[m.name] = room
        return ClusterView(at=now, cold_starts=colds, spare=spare, capacity=capacity, ready=ready)

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
        self.revision += 1
        for name, samples in models.items():
            bucket = self._frozen.setdefault(name, {})
            for s in samples:
                bucket.setdefault(s.uid, s)
        for name, durations in pools.items():
            nodes = self._frozen_nodes.setdefault(name, {})
            for d in durations:
                nodes.setdefault(d.key, d)
