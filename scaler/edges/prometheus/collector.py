"""The Prometheus edge's own /metrics: how the metrics source's requests went."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.edges.prometheus.source import PrometheusSource


class SourceCollector(Collector):
    """Requests, time, retries and rejected samples of the current source, read at scrape time."""

    def __init__(self, source: Callable[[], PrometheusSource]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        src = self._source()
        requests = CounterMetricFamily("prewarm_source_requests", "Requests to the metrics source by kind (instant, range).", labels=["kind"])
        seconds = CounterMetricFamily("prewarm_source_request_duration_seconds", "Time spent in metrics source requests by kind.", labels=["kind"])
        for kind, n in sorted(src.requests_total.items()):
            requests.add_metric([kind], n)
            seconds.add_metric([kind], src.request_seconds_total.get(kind, 0.0))
        rejected = CounterMetricFamily("prewarm_source_rejected_samples", "Samples dropped as unusable (NaN, Inf, stale, ambiguous ...), by reason.", labels=["reason"])
        for reason, n in sorted(src.rejected_samples_total.items()):
            rejected.add_metric([reason], n)
        yield from (requests, seconds, rejected)
        yield CounterMetricFamily("prewarm_source_retries", "Metrics source requests retried after a failure.", value=float(src.retries_total))
