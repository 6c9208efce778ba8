"""The Prometheus edge: vLLM's metrics as the engine's MetricSource, and this edge's /metrics.

    source     PrometheusSource: batched instant queries, range history, retries, hygiene
    promql     query templates and result parsing (pure text)
    checks     config checks only this edge can make (templates, labels, auth)
    http       credentials per request, failures classified into stable reasons
    readings   answers into Observations (signals, scrape time, the SLO histogram's on-time share)
    targets    partial data: a model whose scrape targets dropped out reads as unknown
    counters   requests, latency, failures and rejected samples, counted thread-safely
    collector  those counters (and the partial models) on /metrics
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.registry import Collector

from scaler.core.config import Settings
from scaler.edges import SourceEdge
from scaler.edges.prometheus.checks import config_problems
from scaler.edges.prometheus.collector import SourceCollector
from scaler.edges.prometheus.source import PrometheusSource

__all__ = ["PrometheusEdge", "PrometheusSource", "config_problems"]


def _source(settings: Settings) -> PrometheusSource:
    assert settings.prometheus is not None  # validated: `prometheus` or `replay` is required
    return PrometheusSource(settings.prometheus, settings.defaults,
                            rate_window_seconds=settings.prometheus.rateWindow)


class PrometheusEdge(SourceEdge):
    """A MetricSource that swaps its client when the ``prometheus`` or ``defaults`` keys change."""

    name = "prometheus"
    problems = staticmethod(config_problems)
    source: PrometheusSource

    def __init__(self, settings: Settings) -> None:
        self._keys = (settings.prometheus, settings.defaults)
        self.source = _source(settings)

    @property
    def errors_total(self) -> Mapping[str, int]:
        return self.source.errors_total

    def apply(self, settings: Settings) -> None:
        keys = (settings.prometheus, settings.defaults)
        if keys == self._keys:
            return
        # A refresh already running keeps the old client to its end; the next one uses the new.
        old, self.source, self._keys = self.source, _source(settings), keys
        old.close()

    def collector(self) -> Collector:
        return SourceCollector(lambda: self.source)

    async def aclose(self) -> None:
        self.source.close()
