"""Kubernetes integration, wired: learned cold starts, balloons, leader election, ConfigMap reload.

The one entry point for the app is :func:`build_kubernetes`. It returns the parts the engine and
the app plug in (a ColdStartProvider, Actuators, long-running coroutines) and never starts
anything itself: the app runs ``parts.tasks`` as named asyncio tasks, cancels them on shutdown,
then calls ``parts.close()``.

    app ──> build_kubernetes(settings, clock=..., kubeconfig=..., on_settings=...)
              ├─ Cluster            list+watch Pods and Nodes -> cold starts, GPU accounting
              ├─ StateStore         learned samples <-> ConfigMap (load: all, save: leader)
              ├─ LeaderElector      coordination.k8s.io Lease
              ├─ BalloonActuator    balloon Deployments per pool (leader only)
              └─ ConfigMapWatcher   config.yaml through the API (when kubernetes.configMap is set)

Modules: ``k8s_api`` (JSON + list/watch on the official ApiClient), ``k8s_cluster``,
``k8s_state``, ``k8s_leader``, ``k8s_balloon``, ``k8s_configmap``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.edges.kubernetes.api import Api, KubeApiError, ListWatch
from scaler.edges.kubernetes.balloons import BalloonActuator
from scaler.edges.kubernetes.cluster import BALLOON_LABEL, Cluster
from scaler.edges.kubernetes.configmap import ConfigMapWatcher
from scaler.edges.kubernetes.leader import LeaderElector, default_identity
from scaler.edges.kubernetes.state import StateStore
from scaler.edges.metrics.collector import PoolStatus
from scaler.core.clock import Clock
from scaler.core.config import KubernetesSettings, ModelSettings, ParsedSettings, Settings
from scaler.core.ports import Actuator, ColdStartProvider

__all__ = [
    "Api",
    "BalloonActuator",
    "Cluster",
    "ConfigMapWatcher",
    "KubeApiError",
    "KubernetesCollector",
    "KubernetesParts",
    "LeaderElector",
    "StateStore",
    "build_kubernetes",
]

log = logging.getLogger("prewarm.kubernetes")

Task = Callable[[], Coroutine[Any, Any, None]]
"""A long-running coroutine function (a Coroutine, so ``asyncio.create_task(task())`` type-checks)."""


def _named(name: str, run: Callable[[], Awaitable[None]]) -> Task:
    """A zero-argument coroutine function whose ``__name__`` is the task name to use."""

    async def task() -> None:
        await run()

    task.__name__ = task.__qualname__ = name
    return task


@dataclass
class KubernetesParts:
    """What :func:`build_kubernetes` hands the app. Nothing runs until ``tasks`` are started."""

    cold_starts: ColdStartProvider
    actuators: list[Actuator]
    tasks: list[Task]
    """Long-running coroutine functions; each one's ``__name__`` is its task name
    (``kubernetes-pods``, ``kubernetes-leader`` ...). Any of them failing is a bug (they retry
    API errors themselves)."""
    cluster: Cluster
    elector: LeaderElector
    balloons: BalloonActuator
    state: StateStore
    config_watcher: ConfigMapWatcher | None
    api: Api
    watches: list[ListWatch] = field(default_factory=list)
    _closed: bool = False

    def is_leader(self) -> bool:
        return self.elector.is_leader()

    def update_settings(self, settings: Settings) -> None:
        """Tell the Kubernetes parts about a new config (from the file or the ConfigMap)."""
        self.cluster.set_settings(settings)
        if self.config_watcher is not None:
            self.config_watcher.current = settings

    def pool_has_spare(self, model: ModelSettings) -> bool | None:
        """Whether a new replica of ``model`` finds a GPU in its pool now (None: no pool/unknown).

        With a spare GPU the node provisioning time is not part of the lead time (see
        :func:`scaler.core.coldstart.lead_seconds`).
        """
        return self.cluster.pool_has_spare(model)

    async def wait_synced(self) -> None:
        """Until every watch has listed once (the cluster view is rebuilt)."""
        await asyncio.gather(*(w.synced.wait() for w in self.watches))

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

    def counters(self) -> dict[str, int]:
        """Counters the app may merge into its own (names as in its ``_counters``)."""
        watcher = self.config_watcher
        return {
            "config_reloads": watcher.reloads_total if watcher else 0,
            "config_reload_errors": watcher.errors_total if watcher else 0,
        }

    def close(self) -> None:
        """Stop the watches' threads, save what was learned and release the Lease if leading.

        Blocking (two API calls at most); call it after cancelling ``tasks``, e.g. with
        ``await asyncio.to_thread(parts.close)``.
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
    identity: str | None = None,
    api: Api | None = None,
) -> KubernetesParts:
    """Wire the Kubernetes parts for ``settings.kubernetes`` (which must be set).

    ``kubeconfig`` None: in-cluster config (the pod's ServiceAccount). ``on_settings`` receives
    every valid new config read from the ConfigMap (``kubernetes.configMap``); invalid ones never
    reach it. ``identity`` names this replica in the Lease (default: POD_NAME or host name plus a
    random suffix). ``api`` lets tests pass a client of their own.
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
    balloons = BalloonActuator(clock, api, cluster, is_leader=elector.is_leader)
    pods = ListWatch(api, "/api/v1/pods", cluster.pods_handler, name="pods")
    nodes = ListWatch(api, "/api/v1/nodes", cluster.nodes_handler, name="nodes")
    watches = [pods, nodes]
    tasks: list[Task] = [
        _named("kubernetes-pods", pods.run),
        _named("kubernetes-nodes", nodes.run),
        _named("kubernetes-selectors", lambda: cluster.keep_selectors_fresh(api)),
        _named("kubernetes-leader", elector.run),
        _named("kubernetes-state", lambda: _load_then_save(state)),
    ]
    config_watcher = _config_watcher(k8s, clock, api, settings, on_settings, identity)
    parts = KubernetesParts(
        cold_starts=cluster, actuators=[balloons], tasks=tasks, cluster=cluster, elector=elector,
        balloons=balloons, state=state, config_watcher=config_watcher, api=api, watches=watches,
    )
    if config_watcher is not None:
        watches.append(config_watcher.watch)

        def apply(parsed: ParsedSettings) -> None:
            parts.update_settings(parsed.settings)
            on_settings(parsed)

        config_watcher.on_settings = apply
        tasks.append(_named("kubernetes-configmap", config_watcher.run))
    return parts


def _config_watcher(
    k8s: KubernetesSettings,
    clock: Clock,
    api: Api,
    settings: Settings,
    on_settings: Callable[[ParsedSettings], None],
    identity: str,
) -> ConfigMapWatcher | None:
    if k8s.configMap is None:
        return None
    return ConfigMapWatcher(clock, api, namespace=k8s.namespace, name=k8s.configMap,
                            on_settings=on_settings, current=settings, instance=identity)


async def _load_then_save(state: StateStore) -> None:
    await state.api.call(state.load)
    await state.run()


class KubernetesCollector(Collector):
    """Leader, balloons, pool GPUs and API health, read at scrape time from the parts."""

    def __init__(self, parts: KubernetesParts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        p = self.parts
        yield GaugeMetricFamily("prewarm_leader", "1 when this replica holds the Lease and actuates.",
                                value=1.0 if p.is_leader() else 0.0)
        yield CounterMetricFamily("prewarm_leader_acquisitions", "Times this replica became leader.",
                                  value=p.elector.transitions_total)
        yield from self._balloons()
        yield from self._api()
        if p.config_watcher is not None:
            yield CounterMetricFamily(
                "prewarm_configmap_reload_errors",
                "Versions of the config ConfigMap rejected (each also a Warning Event on it).",
                value=p.config_watcher.errors_total)

    def _balloons(self) -> Iterator[Metric]:
        status = self.parts.balloons.status
        pods = GaugeMetricFamily("prewarm_balloon_pods", "Balloon pods set on the pool's Deployment.",
                                 labels=["pool"])
        wanted = GaugeMetricFamily("prewarm_balloon_wanted_gpus",
                                   "GPUs the forecast wants ready within the node-provisioning lead.",
                                   labels=["pool"])
        capped = GaugeMetricFamily("prewarm_balloon_capped", "1 when maxBalloonGpus cut the plan.",
                                   labels=["pool"])
        for pool, plan in sorted(status.plans.items()):
            pods.add_metric([pool], status.replicas.get(pool, plan.pods))
            wanted.add_metric([pool], plan.wanted_gpus)
            capped.add_metric([pool], 1.0 if plan.capped else 0.0)
        spare = GaugeMetricFamily("prewarm_pool_spare_gpus",
                                  "GPU slots a new replica could take now (balloon-held included).",
                                  labels=["pool"])
        for node_pool in self.parts.cluster.settings.nodePools:
            spare.add_metric([node_pool.name], self.parts.cluster.pool_capacity(node_pool).spare_gpus)
        yield from (pods, wanted, capped, spare)
        yield CounterMetricFamily("prewarm_balloon_errors", "Failed balloon actuations.",
                                  value=status.errors_total)

    def _api(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("prewarm_kubernetes_requests", "Kubernetes API requests by verb.",
                                       labels=["verb"])
        for verb, n in sorted(self.parts.api.requests_total.items()):
            requests.add_metric([verb], n)
        errors = CounterMetricFamily("prewarm_kubernetes_request_errors",
                                     "Failed Kubernetes API requests by HTTP status ('network').",
                                     labels=["code"])
        for code, n in sorted(self.parts.api.errors_total.items()):
            errors.add_metric([code], n)
        watch_errors = CounterMetricFamily("prewarm_kubernetes_watch_errors",
                                           "List/watch failures (each retried with backoff).",
                                           labels=["watch"])
        for watch in self.parts.watches:
            watch_errors.add_metric([watch.name], watch.stats.errors)
        yield from (requests, errors, watch_errors)


def describe(parts: KubernetesParts) -> dict[str, Any]:
    """A one-line status for logs."""
    return {"leader": parts.is_leader(), **parts.cluster.summary(),
            "balloons": dict(parts.balloons.status.replicas)}
