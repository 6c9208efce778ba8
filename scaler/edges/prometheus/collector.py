"""The Prometheus edge's own /metrics: how the metrics source's requests went."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import accumulate

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.edges.prometheus.counters import LATENCY_BUCKETS
from scaler.edges.prometheus.source import PrometheusSource


class SourceCollector(Collector):
    """Requests, latency, retries, rejected samples and partial models of the current source,
    read at scrape time."""

    def __init__(self, source: Callable[[], PrometheusSource]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        src = self._source()
        requests = CounterMetricFamily("prewarm_source_requests", "Requests to the metrics source by kind (instant, range).", labels=["kind"])
        seconds = CounterMetricFamily("prewarm_source_request_duration_seconds", "Time spent in metrics source requests by kind.", labels=["kind"])
        latency = HistogramMetricFamily("prewarm_source_request_latency_seconds", "Duration of each metrics source request (every attempt) by kind.", labels=["kind"])
        bounds = [*(f"{b:g}" for b in LATENCY_BUCKETS), "+Inf"]
        for kind, n in sorted(src.requests_total.items()):
            total = src.request_seconds_total.get(kind, 0.0)
            requests.add_metric([kind], n)
            seconds.add_metric([kind], total)
            counts = list(accumulate(src.latency_buckets.get(kind, [0] * len(bounds))))
            latency.add_metric([kind], list(zip(bounds, counts, strict=True)), sum_value=total)
        rejected = CounterMetricFamily("prewarm_source_rejected_samples", "Samples dropped as unusable (NaN, Inf, stale, ambiguous ...), by reason.", labels=["reason"])
        for reason, n in sorted(src.rejected_samples_total.items()):
            rejected.add_metric([reason], n)
        yield from (requests, seconds, latency, rejected)
        yield CounterMetricFamily("prewarm_source_retries", "Metrics source requests retried after a failure.", value=float(src.retries_total))
        yield GaugeMetricFamily("prewarm_source_partial_models", "Models whose scrape targets dropped out at the last refresh (their demand is unknown; decisions hold).", value=float(src.partial_models))
