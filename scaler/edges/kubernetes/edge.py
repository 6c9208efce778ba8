"""The Kubernetes edge, wired: learned cold starts, balloons, leader election, ConfigMap reload.

    app ──> build_kubernetes(settings, clock=..., kubeconfig=..., on_settings=..., parse=...)
              ├─ Cluster            list+watch Pods (per model namespace) and Nodes -> the pure Fleet
              ├─ StateStore         learned samples <-> ConfigMap (load: all, save: leader)
              ├─ LeaderElector      coordination.k8s.io Lease
              ├─ BalloonActuator    balloon Deployments per pool (leader only), follows snapshots
              └─ ConfigMapWatcher   config.yaml through the API (when kubernetes.configMap is set)

The engine never calls in: this edge *publishes* an immutable :class:`ClusterView` (cold start
per model, spare GPUs per pool) that the engine reads, and the balloons follow the published
snapshots (the finished decisions, the same numbers KEDA gets). Nothing starts in the
constructor: the app runs :meth:`KubernetesEdge.tasks` and then awaits :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client.registry import Collector

from scaler.core.clock import Clock
from scaler.core.config import ModelSettings, ParsedSettings, Settings, settings_from_yaml
from scaler.core.fleet import BALLOON_LABEL, ClusterView, Published
from scaler.core.standby import PoolStatus
from scaler.edges import Edge, Task, named
from scaler.edges.kubernetes.api import Api
from scaler.edges.kubernetes.balloons import BalloonActuator
from scaler.edges.kubernetes.cluster import Cluster
from scaler.edges.kubernetes.configmap import ConfigMapWatcher
from scaler.edges.kubernetes.leader import LeaderElector, default_identity
from scaler.edges.kubernetes.pods import NamespacedPods
from scaler.edges.kubernetes.state import StateStore
from scaler.edges.kubernetes.watch import ListWatch
from scaler.snapshot import SnapshotHolder

log = logging.getLogger("prewarm.kubernetes")

VIEW_CHECK_SECONDS = 1.0
"""How often the cluster is checked for changes to publish (a changed revision only)."""
VIEW_MAX_AGE_SECONDS = 30.0
"""Republished at least this often: learned estimates weigh samples by age."""


class KubernetesEdge(Edge):
    """What :func:`build_kubernetes` hands the app. Nothing runs until ``tasks()`` are started."""

    name = "kubernetes"

    def __init__(self, *, clock: Clock, api: Api, cluster: Cluster, elector: LeaderElector,
                 balloons: BalloonActuator, state: StateStore, config_watcher: ConfigMapWatcher | None,
                 views: Published[ClusterView], snapshots: SnapshotHolder | None) -> None:
        self.clock = clock
        self.api = api
        self.cluster = cluster
        self.elector = elector
        self.balloons = balloons
        self.state = state
        self.config_watcher = config_watcher
        self.views = views
        self.snapshots = snapshots
        self.pods = NamespacedPods(api, cluster, cluster.settings)
        self.nodes = ListWatch(api, "/api/v1/nodes", cluster.nodes_handler, name="nodes")
        self._tasks: list[Task] = [
            named("kubernetes-pods", self.pods.run),
            named("kubernetes-nodes", self.nodes.run),
            named("kubernetes-selectors", lambda: cluster.keep_selectors_fresh(api)),
            named("kubernetes-leader", elector.run),
            named("kubernetes-state", self._load_then_save),
            named("kubernetes-view", self._publish_views),
        ]
        if config_watcher is not None:
            self._tasks.append(named("kubernetes-configmap", config_watcher.run))
        if snapshots is not None:
            self._tasks.append(named("kubernetes-balloons", lambda: balloons.follow(snapshots)))
        self._closed = False

    @property
    def watches(self) -> list[ListWatch]:
        """Every list+watch running now (one per pod namespace, nodes, the config ConfigMap)."""
        return [*self.pods.watches(), self.nodes] + ([self.config_watcher.watch] if self.config_watcher else [])

    def tasks(self) -> list[Task]:
        """Long-running coroutine functions (``kubernetes-pods``, ``kubernetes-leader`` ...);
        they retry API errors themselves, so one failing is a bug."""
        return list(self._tasks)

    def is_leader(self) -> bool:
        return self.elector.is_leader()

    def apply(self, settings: Settings) -> None:
        """A new config (from whichever source is live): the cluster maps pods to the new models."""
        self.cluster.set_settings(settings)
        self.pods.set_settings(settings)
        if self.config_watcher is not None:
            self.config_watcher.current = settings

    def pool_has_spare(self, model: ModelSettings) -> bool | None:
        """Whether a new replica of ``model`` finds a GPU in its pool now (None: no pool)."""
        return self.cluster.pool_has_spare(model)

    async def wait_synced(self) -> None:
        """Until every watch has listed once (the cluster view is rebuilt)."""
        others = [w for w in self.watches if w not in self.pods.watches()]
        await asyncio.gather(self.pods.wait_synced(), *(w.synced.wait() for w in others))

    def pool_status(self, *, now: float) -> dict[str, PoolStatus]:
        """Balloon pods per pool: set on the Deployment, pending (no node yet), oldest pending age."""
        out: dict[str, PoolStatus] = {}
        for pool in self.cluster.settings.nodePools:
            pending = [p for p in self.cluster.pods.values()
                       if p.labels.get(BALLOON_LABEL) == pool.name and p.node is None and p.phase == "Pending"]
            out[pool.name] = PoolStatus(
                balloon_pods=self.balloons.status.replicas.get(pool.name, 0),
                pending_pods=len(pending),
                oldest_pending_seconds=max((now - p.created for p in pending), default=0.0))
        return out

    def collector(self) -> Collector:
        from scaler.edges.kubernetes.collector import KubernetesCollector

        return KubernetesCollector(self)

    async def _publish_views(self) -> None:
        """Publish the cluster view whenever the cluster changed (and at least every 30 s)."""
        seen, published_at = -1, 0.0
        while True:
            now = self.clock.now()
            if self.cluster.revision != seen or now - published_at >= VIEW_MAX_AGE_SECONDS:
                seen, published_at = self.cluster.revision, now
                self.views.publish(self.cluster.view(now=now))
            await asyncio.sleep(VIEW_CHECK_SECONDS)

    async def _load_then_save(self) -> None:
        await self.api.call(self.state.load)
        await self.state.run()

    def close(self) -> None:
        """Stop the watches' threads, save what was learned and release the Lease if leading.

        Blocking (two API calls at most); call it after cancelling the tasks.
        """
        if self._closed:
            return
        self._closed = True
        for watch in self.watches:
            watch.stop()
        try:
            if self.elector.is_leader() and self.cluster.changed:
                self.state.save()
            self.elector.release()
        except Exception as exc:  # shutting down: report, never raise
            log.warning("kubernetes shutdown: %s", exc)
        finally:
            self.api.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def build_kubernetes(
    settings: Settings,
    *,
    clock: Clock,
    kubeconfig: str | None,
    on_settings: Callable[[ParsedSettings], None],
    parse: Callable[[str, str], ParsedSettings] | None = None,
    views: Published[ClusterView] | None = None,
    snapshots: SnapshotHolder | None = None,
    identity: str | None = None,
    api: Api | None = None,
) -> KubernetesEdge:
    """Wire the Kubernetes edge for ``settings.kubernetes`` (which must be set).

    ``kubeconfig`` None: in-cluster config (the pod's ServiceAccount). ``on_settings`` receives
    every valid new config read from the ConfigMap (``kubernetes.configMap``), validated by
    ``parse`` (the app passes the core's and every edge's checks; default: the core's). ``views``
    receives the published cluster views; ``snapshots``, when given, drives the balloons.
    ``identity`` names this replica in the Lease (default: POD_NAME or host name plus a random
    suffix). ``api`` lets tests pass a client of their own.
    """
    k8s = settings.kubernetes
    if k8s is None:
        raise ValueError("settings.kubernetes is not set: Kubernetes integration is off")
    api = api or Api.connect(kubeconfig)
    identity = identity or default_identity()
    cluster = Cluster(settings)
    elector = LeaderElector(
        clock, api, namespace=k8s.namespace, name=k8s.leaseName,
        lease_duration_seconds=k8s.leaseDuration, renew_period_seconds=k8s.renewPeriod,
        identity=identity,
    )
    state = StateStore(clock, api, cluster, namespace=k8s.namespace, name=k8s.stateConfigMap,
                       is_leader=elector.is_leader)
    balloons = BalloonActuator(clock, api, cluster, is_leader=elector.is_leader, instance=identity)
    watcher = None
    if k8s.configMap is not None:
        watcher = ConfigMapWatcher(
            clock, api, namespace=k8s.namespace, name=k8s.configMap, on_settings=on_settings,
            parse=parse or (lambda text, source: settings_from_yaml(text, source=source)),
            current=settings, instance=identity)
    return KubernetesEdge(clock=clock, api=api, cluster=cluster, elector=elector, balloons=balloons,
                          state=state, config_watcher=watcher,
                          views=views if views is not None else Published(ClusterView()),
                          snapshots=snapshots)

