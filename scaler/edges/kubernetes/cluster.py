"""The Kubernetes edge's cluster: Pod and Node list+watches feeding the pure :class:`Fleet`.

Pods are watched per namespace (:mod:`scaler.edges.kubernetes.pods`), nodes cluster-wide.

Parsing API objects and reading target Deployments' selectors live here; sample bookkeeping and
GPU accounting live in :mod:`scaler.core.fleet`. Every replica keeps its own copy; on start it is
rebuilt from the existing Pods and Nodes plus the persisted summary
(:mod:`scaler.edges.kubernetes.state`), so a restart forgets nothing that was learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping

from scaler.core.config import Settings
from scaler.core.fleet import BALLOON_LABEL, Fleet, NodeView, PodView, Selector
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj, parse_time, quantity_int

__all__ = ["BALLOON_LABEL", "Cluster", "node_view", "pod_view"]

log = logging.getLogger("prewarm.kubernetes")

SELECTOR_REFRESH_SECONDS = 60.0
"""How often target Deployments are re-read (a selector rarely changes; a new model appears on
config reload, which refreshes at once)."""


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


class _NodesHandler:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def replace(self, items: list[Obj]) -> None:
        self.cluster.reset_nodes(v for v in map(node_view, items) if v is not None)

    def apply(self, event_type: str, obj: Obj) -> None:
        view = node_view(obj)
        if view is not None:
            (self.cluster.drop_node if event_type == "DELETED" else self.cluster.put_node)(view)


class Cluster(Fleet):
    """A :class:`Fleet` fed by the watches, plus the selectors read from target Deployments.

    Mutated only on the event loop (by the watches and the selector task).
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.nodes_handler = _NodesHandler(self)
        self._targets_changed = asyncio.Event()

    def set_settings(self, settings: Settings) -> bool:
        changed = super().set_settings(settings)
        if changed:
            self._targets_changed.set()
        return changed

    def reset_namespace_pods(self, namespace: str, views: Iterable[PodView]) -> None:
        """One namespace's list: its pods are replaced, the other namespaces' stay."""
        others = [p for p in self.pods.values() if p.namespace != namespace]
        self.reset_pods([*others, *views])

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
        if found != self.selectors:
            self.selectors = found
            self.revision += 1

    async def keep_selectors_fresh(self, api: Api, period_seconds: float = SELECTOR_REFRESH_SECONDS) -> None:
        while True:
            self._targets_changed.clear()
            try:
                await api.call(self.refresh_selectors, api)
            except Exception as exc:  # any API failure: keep the old selectors
                log.warning("reading target deployments failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._targets_changed.wait(), period_seconds)
