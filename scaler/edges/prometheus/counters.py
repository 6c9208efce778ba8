"""What the Prometheus source counts for its /metrics: requests, latency, failures, rejections.

Plain attributes with their keys pre-populated, so the collector can iterate while a refresh's
workers update values (every update under one lock).
"""

from __future__ import annotations

import threading

ERROR_REASONS = ("unreachable", "timeout", "tls", "throttled", "http_4xx", "http_5xx",
                 "bad_response", "credentials", "partial")
REJECT_REASONS = ("nan", "inf", "negative", "stale", "ambiguous", "unexpected_series",
                  "out_of_range")
KINDS = ("instant", "range")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the request latency histogram; +Inf is implied."""


class SourceCounters:
    """The counters of one source; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors_total: dict[str, int] = dict.fromkeys(ERROR_REASONS, 0)
        """Queries that failed after all retries, by reason; ``partial``: a model's refresh whose
        scrape targets had dropped out (its demand was unknown)."""
        self.requests_total: dict[str, int] = dict.fromkeys(KINDS, 0)
        """HTTP requests sent (every attempt), by kind."""
        self.request_seconds_total: dict[str, float] = dict.fromkeys(KINDS, 0.0)
        """Seconds spent in HTTP requests, by kind."""
        self.latency_buckets: dict[str, list[int]] = {
            k: [0] * (len(LATENCY_BUCKETS) + 1) for k in KINDS}
        """Requests by kind and latency bucket (``LATENCY_BUCKETS``, then +Inf), not cumulative."""
        self.retries_total = 0
        self.rejected_samples_total: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        """Values refused by data hygiene (the model's value is unknown instead), by reason."""
        self.last_success: float | None = None
        """``now`` of the last observe() whose demand queries succeeded (Unix seconds)."""

    def _count_request(self, kind: str, seconds: float) -> None:
        bucket = next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b),
                      len(LATENCY_BUCKETS))
        with self._lock:
            self.requests_total[kind] += 1
            self.request_seconds_total[kind] += seconds
            self.latency_buckets[kind][bucket] += 1

    def _count_retry(self) -> None:
        with self._lock:
            self.retries_total += 1

    def _count_error(self, reason: str) -> None:
        with self._lock:
            self.errors_total[reason] += 1

    def _reject(self, reason: str) -> None:
        with self._lock:
            self.rejected_samples_total[reason] += 1

    def _set_last_success(self, now: float) -> None:
        with self._lock:
            self.last_success = now if self.last_success is None else max(self.last_success, now)
