"""MetricSource over a real Prometheus (or Thanos/Mimir), through prometheus-api-client.

The only module that talks to Prometheus. Per refresh, :meth:`PrometheusSource.observe` sends one
instant query per signal for ALL models (``promql.plans``); :meth:`PrometheusSource.history` reads
one model's demand with range queries chunked under Prometheus' 11,000-points limit.

A refresh's queries run concurrently, ``OBSERVE_WORKERS`` at a time: a slow but healthy Prometheus
costs a refresh ``ceil(queries / 4)`` query times, not their sum. A decision is valid from when
its data was scraped (``Observation.sampled_at``), not from when the refresh ran.

Failures, all explicit:

- the source as a whole (unreachable, timeout, 5xx, 4xx, garbage) -> :class:`SourceError` with a
  ``reason`` label, after ``retries`` retries with exponential backoff and jitter (4xx and
  credential problems are not retried: they need a fix, not patience);
- one model's value (NaN, +-Inf, negative, several series where one was expected, a stale
  timestamp, an on-time share outside [0, 1]) -> that model's value is unknown (``demand=None``,
  signal absent), counted in ``rejected_samples_total`` by reason - never turned into a zero;
- one auxiliary signal failing -> the signal is absent this refresh; the demand decides whether
  the refresh fails;
- fewer scrape targets reporting a model than recently (``targets.TargetWatch``) -> partial data:
  that model's demand is unknown, counted as ``errors_total["partial"]``.

Counters for /metrics are plain attributes (``counters.SourceCounters``); ``close()`` or ``with``.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np
import requests
import urllib3
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from forecasting.types import Series
from scaler.core.config import Defaults, ModelSettings, PrometheusSettings
from scaler.core.errors import ConfigError, SourceError
from scaler.core.model import Observation
from scaler.edges.prometheus import promql
from scaler.edges.prometheus.checks import validate_queries, validate_settings
from scaler.edges.prometheus.counters import SourceCounters
from scaler.edges.prometheus.http import RETRIED, FileAuth, classify
from scaler.edges.prometheus.readings import bad_override, observation, slo_reading
from scaler.edges.prometheus.targets import ACCEPT_FRACTION, TargetWatch

log = logging.getLogger(__name__)

MAX_POINTS_PER_QUERY = 10_000
"""Points per series per range request; Prometheus rejects more than 11,000."""
MAX_QUERY_CHARS = 24_000
"""Longer batched queries are split (they travel in the URL; proxies cap URLs near 32 KiB)."""
OBSERVE_WORKERS = 4
"""Queries of one refresh in flight at once (bounded: thousands of models never mean thousands
of connections, and Prometheus is not hammered)."""


class PrometheusSource(SourceCounters):
    """MetricSource reading vLLM's metrics from Prometheus. Blocking; thread-safe.

    ``sleep`` and ``rng`` are injected for the retry backoff (tests pass a recorder);
    ``rate_window_seconds`` is the ``{{window}}`` of instant queries (history uses
    ``max(2 * step, rate window)``); a sample whose timestamp is more than
    ``max_sample_age_seconds`` (default ``2 * defaults.step``) away from ``now`` is rejected.
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        defaults: Defaults,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        rate_window_seconds: float = 60.0,
        max_sample_age_seconds: float | None = None,
        backoff_base_seconds: float = 0.25,
        backoff_max_seconds: float = 5.0,
    ) -> None:
        problems = validate_settings(settings) + [
            f"defaults.queries.{p}" for p in validate_queries(defaults.queries, batched=True)
        ]
        if problems:
            raise ConfigError([f"prometheus.{p}" if not p.startswith("defaults.") else p
                               for p in problems])
        self._settings = settings
        self._defaults = defaults
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rate_window = rate_window_seconds
        self._max_age = max_sample_age_seconds or 2 * defaults.step
        self._backoff = (backoff_base_seconds, backoff_max_seconds)
        super().__init__()
        self._client = self._connect(settings)
        self._pool = ThreadPoolExecutor(OBSERVE_WORKERS, thread_name_prefix="prometheus")
        self._targets = TargetWatch()

    @staticmethod
    def _connect(settings: PrometheusSettings) -> PrometheusConnect:
        session = requests.Session()
        session.verify = settings.caFile or not settings.insecureSkipVerify
        if settings.insecureSkipVerify:
            # The operator opted out of verification; one log line instead of one warning a request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("prometheus: TLS verification disabled (insecureSkipVerify)")
        # Passed as a mapping: the client's annotations are narrower than what it accepts
        # (headers may be None, auth any requests auth, timeout float seconds).
        options: dict[str, Any] = {
            "url": settings.url.rstrip("/"),
            "headers": dict(settings.headers) or None,
            # No urllib3 retries (ours have jitter and are counted); read=False keeps a read
            # timeout a timeout instead of a "max retries" connection error.
            "retry": Retry(total=0, read=False),
            "auth": FileAuth(settings) if settings.bearerTokenFile or settings.basicAuth else None,
            "session": session,
            "timeout": settings.timeout,
        }
        return PrometheusConnect(**options)

    @property
    def partial_models(self) -> int:
        """Models whose scrape targets had dropped out at the last refresh."""
        return self._targets.partial_models

    def close(self) -> None:
        # No wait, no cancel: a refresh still running on this source (a config swap) finishes.
        self._pool.shutdown(wait=False)
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- MetricSource -----------------------------------------------------------------------------

    def observe(self, models: Sequence[ModelSettings], *, now: float) -> Mapping[str, Observation]:
        """One batched read at ``now``: the demand queries (one per kind in use), then one per
        auxiliary signal and the SLO's; each stage concurrently, ``OBSERVE_WORKERS`` at a time.

        Raises SourceError when a demand query fails; an auxiliary failure only drops that signal
        (and, for a source-level reason, those not sent yet: they would fail the same way)."""
        if not models:
            return {}
        values: dict[str, dict[str, float]] = {m.name: {} for m in models}
        # Demand first, on its own: when it fails the refresh fails, and a struggling Prometheus
        # is not sent a dozen more queries (and their retries) that would fail the same way.
        self._gather([(kind, [m for m in models if m.policy.demand == kind])
                      for kind in promql.DEMAND_SIGNALS], now, values, required=True)
        self._set_last_success(now)
        with_slo = [m for m in models if m.policy.slo is not None]
        self._gather([(signal, with_slo if signal == promql.SLO_SIGNAL else models)
                      for signal in (*promql.AUX_SIGNALS, promql.SLO_SIGNAL)],
                     now, values, required=False)
        return self._observations(models, values, now)

    def _gather(
        self, reads: Sequence[tuple[str, Sequence[ModelSettings]]], now: float,
        values: dict[str, dict[str, float]], *, required: bool,
    ) -> None:
        """Read signals concurrently into ``values``; a failure raises only when ``required``."""
        stop = threading.Event()  # set by the first source-level failure: send nothing more

        def read_one(signal: str, users: Sequence[ModelSettings]) -> dict[str, dict[str, float]] | None:
            if stop.is_set():
                return None
            try:
                return self._read_signal(signal, users, now)
            except SourceError as exc:
                if exc.reason != "http_4xx":
                    stop.set()
                raise

        futures = [(signal, self._pool.submit(read_one, signal, users)) for signal, users in reads if users]
        try:
            for signal, future in futures:
                try:
                    read = future.result()
                except SourceError as exc:
                    if required:
                        raise
                    log.warning("prometheus: signal %s skipped this refresh: %s", signal, exc)
                    if exc.reason != "http_4xx":
                        break
                    continue
                if read is None:
                    continue
                for name, signals in read.items():
                    values[name].update(signals)
        finally:
            for _, future in futures:
                future.cancel()  # only those not started; a running one ends on its own

    def _observations(
        self, models: Sequence[ModelSettings], values: dict[str, dict[str, float]], now: float
    ) -> dict[str, Observation]:
        """Observations with stale demand refused and partial models' demand unknown."""
        out: dict[str, Observation] = {}
        for m in models:
            obs, refused = observation(m, values[m.name], now, max_age=self._max_age)
            if refused:
                self._reject(refused)
            window = ACCEPT_FRACTION * m.policy.staleAfter
            partial = self._targets.check(m.name, obs.replicas, now=now, window=window)
            if partial and obs.demand is not None:
                # Fewer targets than a moment ago: the sum misses their share. Unknown, not less.
                self._count_error("partial")
                obs = replace(obs, demand=None)
            out[m.name] = obs
        self._targets.keep(out)
        return out

    def history(
        self, model: ModelSettings, *, start: float, end: float, step_seconds: int
    ) -> Series:
        """Demand over [start, end) at ``step_seconds``; NaN where Prometheus has nothing."""
        count = max(0, math.ceil((end - start) / step_seconds - 1e-9))
        values = np.full(count, np.nan)
        window = promql.duration(max(2.0 * step_seconds, self._rate_window))
        groups = promql.group_models(model.policy.demand, [model], self._defaults.queries)
        plan = promql.plan(model.policy.demand, groups, window=window)
        for samples in self._range_chunks(plan.query, start, count, step_seconds):
            self._fill(values, samples, plan, start, step_seconds)
        return Series(start=start, step_seconds=step_seconds, values=values)

    def on_time_history(
        self, model: ModelSettings, *, start: float, end: float, step_seconds: int
    ) -> list[tuple[float, float | None, float]]:
        """The SLO's on-time share over [start, end) at ``step_seconds``, each over the model's
        ``slo.window``: the live signal's query as a range query, read bound by bound at every
        step (time, share, requests); (time, None, 0) where nothing finished (an idle window).
        Steps without a usable reading are left out; a refused one is counted as the live
        signal's would be."""
        slo = model.policy.slo
        if slo is None or bad_override(promql.SLO_SIGNAL, model):
            return []
        count = max(0, math.ceil((end - start) / step_seconds - 1e-9))
        window = promql.duration(self._rate_window)
        out: list[tuple[float, float | None, float]] = []
        for plan in promql.plans(promql.SLO_SIGNAL, [model], self._defaults.queries, window=window,
                                 max_query_chars=MAX_QUERY_CHARS):
            for samples in self._range_chunks(plan.query, start, count, step_seconds):
                out += self._on_time_points(plan, samples, model.name, slo.maxQueueTime)
        return sorted(out)

    def _range_chunks(self, query: str, start: float, count: int, step: int) -> Iterator[list[promql.Sample]]:
        """``count`` steps of ``query`` from ``start``, in range requests of at most
        :data:`MAX_POINTS_PER_QUERY` points (Prometheus refuses more than 11,000 per series)."""
        for first in range(0, count, MAX_POINTS_PER_QUERY):
            n = min(MAX_POINTS_PER_QUERY, count - first)
            t0 = start + first * step
            yield self._request_range(query, t0, t0 + (n - 1) * step, step)

    def _on_time_points(self, plan: promql.Plan, samples: list[promql.Sample], name: str,
                        max_queue_time: float) -> list[tuple[float, float | None, float]]:
        """A range answer's histograms, summed bound by bound per step, as on-time shares."""
        steps: dict[float, dict[frozenset[tuple[str, str]], dict[float, float]]] = {}
        for s in samples:
            rest, bound = _bucket_of(s.labels)
            if plan.model_for(s.labels) != name or bound is None:
                self._reject("unexpected_series")
                continue
            for ts, value in s.points:
                buckets = steps.setdefault(ts, {}).setdefault(rest, {})
                buckets[bound] = buckets.get(bound, 0.0) + value
        readings = ((ts, self._slo_reading(histograms, max_queue_time)) for ts, histograms in steps.items())
        return [(ts, r.get("slo_on_time_ratio"), r["slo_requests"]) for ts, r in readings if "slo_requests" in r]

    # --- one signal -------------------------------------------------------------------------------

    def _read_signal(
        self, signal: str, models: Sequence[ModelSettings], now: float
    ) -> dict[str, dict[str, float]]:
        """One signal's values by model (a worker's job: it touches nothing shared but counters)."""
        values: dict[str, dict[str, float]] = {}
        usable = [m for m in models if not bad_override(signal, m)]
        window = promql.duration(self._rate_window)
        for plan in promql.plans(signal, usable, self._defaults.queries, window=window,
                                 max_query_chars=MAX_QUERY_CHARS):
            for plan_, samples in self._answers(plan, now):
                if signal == promql.SLO_SIGNAL:
                    for name, read in self._on_time_values(plan_, samples, now, usable).items():
                        values.setdefault(name, {}).update(read)
                    continue
                for name, value in self._instant_values(plan_, samples, now).items():
                    values.setdefault(name, {})[signal] = value
        return values

    def _answers(self, plan: promql.Plan, now: float) -> Iterator[tuple[promql.Plan, list[promql.Sample]]]:
        """The plan's answer; on a 4xx (bad PromQL) each group alone, so one bad per-model
        override blinds only its own model, not every model batched with it."""
        try:
            yield plan, self._request_instant(plan.query, now)
        except SourceError as exc:
            if exc.reason != "http_4xx" or len(plan.groups) == 1:
                raise
            for group in plan.groups:
                single = promql.plan(plan.signal, [group], window=promql.duration(self._rate_window))
                try:
                    yield single, self._request_instant(single.query, now)
                except SourceError as group_exc:
                    if group_exc.reason != "http_4xx":
                        raise
                    log.warning("prometheus: %s for %s: %s", plan.signal,
                                [n for _, n in group.models], group_exc)

    def _mapped(
        self, plan: promql.Plan, samples: list[promql.Sample], now: float
    ) -> Iterator[tuple[str, promql.Sample, float]]:
        """(model, series, value) for every answer series that belongs to a model and is fresh."""
        for s in samples:
            name = plan.model_for(s.labels)
            if name is None:
                self._reject("unexpected_series")
                continue
            ts, value = s.points[0]
            if abs(ts - now) > self._max_age:
                self._reject("stale")
                continue
            yield name, s, value

    def _instant_values(
        self, plan: promql.Plan, samples: list[promql.Sample], now: float
    ) -> dict[str, float]:
        found: dict[str, list[float]] = {}
        for name, _, value in self._mapped(plan, samples, now):
            found.setdefault(name, []).append(value)
        out: dict[str, float] = {}
        for name, vals in found.items():
            reason = "ambiguous" if len(vals) > 1 else promql.hygiene(vals[0])
            if reason:
                self._reject(reason)
            else:
                out[name] = vals[0]
        return out

    def _on_time_values(
        self, plan: promql.Plan, samples: list[promql.Sample], now: float,
        models: Sequence[ModelSettings],
    ) -> dict[str, dict[str, float]]:
        """``slo_on_time_ratio`` and ``slo_requests`` per model from its histogram by ``le``."""
        # Per model: one histogram per remaining label set. Bounds spelled differently ("1" and
        # "1.0": two pods with different clients) are the same bound, so their counts add up;
        # a second label set (e.g. an override that kept `engine`) is several series: ambiguous.
        found: dict[str, dict[frozenset[tuple[str, str]], dict[float, float]]] = {}
        for name, s, value in self._mapped(plan, samples, now):
            rest, bound = _bucket_of(s.labels)
            if bound is None:
                self._reject("unexpected_series")
                continue
            buckets = found.setdefault(name, {}).setdefault(rest, {})
            buckets[bound] = buckets.get(bound, 0.0) + value
        slos = {m.name: m.policy.slo for m in models}
        out: dict[str, dict[str, float]] = {}
        for name, histograms in found.items():
            slo = slos.get(name)
            if slo is None:
                continue
            reading = self._slo_reading(histograms, slo.maxQueueTime)
            if reading:
                out[name] = reading
        return out

    def _slo_reading(self, histograms: Mapping[frozenset[tuple[str, str]], Mapping[float, float]],
                     max_queue_time: float) -> dict[str, float]:
        """``slo_reading`` of one model's histograms (by label set), a refusal counted: empty."""
        reading, reason = slo_reading(list(histograms.values()), max_queue_time)
        if reason:
            self._reject(reason)
            return {}
        return reading

    def _fill(
        self, values: np.ndarray[Any, np.dtype[np.float64]], samples: list[promql.Sample],
        plan: promql.Plan, start: float, step: int,
    ) -> None:
        mine = [s for s in samples if plan.model_for(s.labels) is not None]
        if len(samples) > len(mine):
            self._reject("unexpected_series")
        if len(mine) > 1:
            self._reject("ambiguous")
            return
        for s in mine:
            for ts, value in s.points:
                index = round((ts - start) / step)
                if not 0 <= index < len(values) or abs(start + index * step - ts) > 1e-3:
                    continue
                reason = promql.hygiene(value)
                if reason:
                    self._reject(reason)
                else:
                    values[index] = value

    # --- HTTP -------------------------------------------------------------------------------------

    def _request_instant(self, query: str, now: float) -> list[promql.Sample]:
        params = {"time": repr(now), "timeout": repr(self._settings.timeout)}
        return self._request("instant", lambda: promql.parse_result(
            self._client.custom_query(query, params=params), "value"))

    def _request_range(self, query: str, start: float, end: float, step: int) -> list[promql.Sample]:
        # Exact (float) bounds through params: the client would round its datetimes to seconds.
        params = {"start": repr(start), "end": repr(end), "timeout": repr(self._settings.timeout)}
        return self._request("range", lambda: promql.parse_result(self._client.custom_query_range(
            query, start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC), step=str(step), params=params,
        ), "values"))

    def _request(self, kind: str, call: Callable[[], list[promql.Sample]]) -> list[promql.Sample]:
        retries = self._settings.retries
        for attempt in range(retries + 1):
            began = time.monotonic()
            try:
                return call()
            except Exception as exc:  # classified; anything unexpected propagates unchanged
                error = classify(exc)
                if error is None:
                    raise
                if error.reason not in RETRIED or attempt == retries:
                    self._count_error(error.reason)
                    raise error from (None if error is exc else exc)
            finally:
                self._count_request(kind, time.monotonic() - began)
            self._count_retry()
            self._sleep(self._backoff_seconds(attempt))
        raise AssertionError("not reached")  # pragma: no cover

    def _backoff_seconds(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": base * 2^attempt, scaled into [50%, 100%]."""
        base, cap = self._backoff
        return min(cap, base * 2.0**attempt) * (0.5 + 0.5 * self._rng.random())


def _bucket_of(labels: Mapping[str, str]) -> tuple[frozenset[tuple[str, str]], float | None]:
    """A histogram bucket series' histogram (its labels but ``le`` and the group label) and bound
    (None: no parsable ``le``)."""
    rest = frozenset((k, v) for k, v in labels.items() if k not in ("le", promql.GROUP_LABEL))
    return rest, promql.bound(labels.get("le", ""))
