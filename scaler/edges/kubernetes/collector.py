"""The Kubernetes edge's own /metrics: leader, balloons, pool GPUs and API health."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from scaler.edges.kubernetes.edge import KubernetesEdge


class KubernetesCollector(Collector):
    """Leader, balloons, pool GPUs and API health, read at scrape time from the parts."""

    def __init__(self, parts: KubernetesEdge) -> None:
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
                value=p.config_watcher.stats.errors_total)

    def _balloons(self) -> Iterator[Metric]:
        status = self.parts.balloons.status
        pods = GaugeMetricFamily("prewarm_balloon_pods", "Balloon pods set on the pool's Deployment.",
                                 labels=["pool"])
        wanted = GaugeMetricFamily("prewarm_balloon_wanted_gpus",
                                   "GPUs the forecast wants ready within the node-provisioning lead.",
                                   labels=["pool"])
        capped = GaugeMetricFamily("prewarm_balloon_capped", "1 when maxBalloonGpus cut the plan.",
                                   labels=["pool"])
        missing = GaugeMetricFamily(
            "prewarm_balloon_missing",
            "1 when the pool's balloon Deployment is missing or not named in the Role (the chart "
            "creates it; prewarm only scales it): no pre-warming for the pool.", labels=["pool"])
        drift = GaugeMetricFamily(
            "prewarm_balloon_template_drift",
            "1 when the balloon Deployment's pod template differs from the config's nodePools entry.",
            labels=["pool"])
        for pool, plan in sorted(status.plans.items()):
            pods.add_metric([pool], status.replicas.get(pool, plan.pods))
            wanted.add_metric([pool], plan.wanted_gpus)
            capped.add_metric([pool], 1.0 if plan.capped else 0.0)
            missing.add_metric([pool], 1.0 if pool in status.missing else 0.0)
            drift.add_metric([pool], 1.0 if pool in status.drifted else 0.0)
        spare = GaugeMetricFamily("prewarm_pool_spare_gpus",
                                  "GPU slots a new replica could take now (balloon-held included).",
                                  labels=["pool"])
        for node_pool in self.parts.cluster.settings.nodePools:
            spare.add_metric([node_pool.name], self.parts.cluster.pool_capacity(node_pool).spare_gpus)
        yield from (pods, wanted, capped, missing, drift, spare)
        yield CounterMetricFamily("prewarm_balloon_errors", "Failed balloon actuations.",
                                  value=status.errors_total)
        yield CounterMetricFamily("prewarm_balloon_scales", "Balloon Deployments scaled (replicas changed).",
                                  value=status.scales_total)

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
        relists = CounterMetricFamily("prewarm_kubernetes_watch_relists",
                                      "Full lists of a watched collection (start, 410 Gone, errors).",
                                      labels=["watch"])
        events = CounterMetricFamily("prewarm_kubernetes_watch_events", "Watch events applied.",
                                     labels=["watch"])
        for watch in self.parts.watches:
            watch_errors.add_metric([watch.name], watch.stats.errors)
            relists.add_metric([watch.name], watch.stats.relists)
            events.add_metric([watch.name], watch.stats.events)
        yield from (requests, errors, watch_errors, relists, events)
        yield CounterMetricFamily("prewarm_state_saves", "Learned cold-start samples saved to the state "
                                  "ConfigMap (leader only).", value=self.parts.state.saves_total)


