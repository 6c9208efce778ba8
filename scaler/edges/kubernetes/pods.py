"""Pods, watched one namespace at a time: only where the config's models (and balloons) live.

A cluster-wide pod list would let the daemon read every pod's environment in the cluster, so the
RBAC grants pods per namespace instead (a Role per model namespace, rendered from the config),
and this runs one :class:`ListWatch` per namespace: the targets' namespaces and the balloons'.
A config reload that adds a namespace starts its watch; one that drops a namespace stops it and
forgets its pods. Nodes stay one cluster-wide watch (GPU accounting; nodes carry no secrets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from scaler.core.config import Settings
from scaler.edges.kubernetes.api import Api, Obj
from scaler.edges.kubernetes.cluster import Cluster, pod_view
from scaler.edges.kubernetes.watch import ListWatch

log = logging.getLogger("prewarm.kubernetes")


def pod_namespaces(settings: Settings) -> set[str]:
    """Where pods are read: every model target's namespace and every pool's balloon namespace."""
    models = {m.target.namespace for m in settings.models if m.target is not None}
    return models | {p.balloon.namespace for p in settings.nodePools}


class _NamespaceHandler:
    """Feeds one namespace's list+watch into the cluster; a relist replaces that namespace only."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def replace(self, items: list[Obj]) -> None:
        self.cluster.reset_namespace_pods(self.namespace, (v for v in map(pod_view, items) if v is not None))

    def apply(self, event_type: str, obj: Obj) -> None:
        view = pod_view(obj)
        if view is not None:
            (self.cluster.drop_pod if event_type == "DELETED" else self.cluster.put_pod)(view)


class NamespacedPods:
    """One pod list+watch per namespace of :func:`pod_namespaces`, following config changes."""

    def __init__(self, api: Api, cluster: Cluster, settings: Settings) -> None:
        self.api = api
        self.cluster = cluster
        self.wanted = pod_namespaces(settings)
        self._watches: dict[str, ListWatch] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._started = asyncio.Event()

    def watches(self) -> list[ListWatch]:
        return [self._watches[ns] for ns in sorted(self._watches)]

    def set_settings(self, settings: Settings) -> None:
        wanted = pod_namespaces(settings)
        if wanted != self.wanted:
            self.wanted = wanted
            self._changed.set()

    async def wait_synced(self) -> None:
        """Until every wanted namespace has been listed once."""
        await self._started.wait()
        await asyncio.gather(*(w.synced.wait() for w in self.watches()))

    async def run(self) -> None:
        """Reconcile the watches with the wanted namespaces; a watch that dies is a bug: raise."""
        try:
            while True:
                self._changed.clear()
                self._reconcile()
                self._started.set()
                changed = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait([changed, *self._tasks.values()],
                                             return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                for task in done - {changed}:
                    task.result()  # a list+watch retries by itself; ending at all is a bug
        finally:
            for namespace in list(self._tasks):
                await self._stop(namespace)

    def _reconcile(self) -> None:
        for namespace in sorted(self.wanted - set(self._tasks)):
            watch = ListWatch(self.api, f"/api/v1/namespaces/{namespace}/pods",
                              _NamespaceHandler(self.cluster, namespace), name=f"pods {namespace}")
            self._watches[namespace] = watch
            self._tasks[namespace] = asyncio.create_task(watch.run(), name=f"kubernetes-pods-{namespace}")
            log.info("watching pods in namespace %s", namespace)
        for namespace in sorted(set(self._tasks) - self.wanted):
            task = self._tasks.pop(namespace)
            task.cancel()
            self._watches.pop(namespace).stop(wait_seconds=0.0)
            self.cluster.reset_namespace_pods(namespace, ())
            log.info("stopped watching pods in namespace %s (no configured model there)", namespace)

    async def _stop(self, namespace: str) -> None:
        task = self._tasks.pop(namespace)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
