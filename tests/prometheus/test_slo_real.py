"""The SLO's on-time share read from a real Prometheus scraping the vLLM stand-in.

The stand-in's queue-time histogram has vLLM's own bucket bounds and a known distribution per
pod (``cdf(bound, queue_median)``), so every expected share is computed, not recorded. SMALL
runs two pods that differ in both distribution and bound spelling ("1.0" vs "1"); MID runs one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from scaler.core.config import ModelSettings, Settings
from scaler.core.model import Observation
from scaler.edges.prometheus.source import PrometheusSource
from tests.prometheus.conftest import MID, SMALL
from tests.prometheus.fakeprom import FakePrometheus
from tests.prometheus.test_prom_real import make_settings
from tests.support import promenv
from tests.support.vllm_exporter import cdf

pytestmark = pytest.mark.prometheus

WINDOW = 60.0
"""The shortest slo.window: the live histograms are only minutes old."""
SLO = {"onTime": 0.99, "window": f"{WINDOW:.0f}s"}
SLO_KEYS = {"slo_on_time_ratio", "slo_requests"}
MODELS = [
    # 1.2 s lies between the bounds 1.0 and 1.5: the share is read at 1.0.
    {"name": "small", "servedModelName": SMALL, "capacityPerReplica": 10,
     "slo": {**SLO, "maxQueueTime": "1.2s"}},
    {"name": "mid", "servedModelName": MID, "capacityPerReplica": 4,
     "slo": {**SLO, "maxQueueTime": "2.5s"}},
    {"name": "mid-plain", "servedModelName": MID, "capacityPerReplica": 4},
]


def slo_settings(url: str, models: Sequence[Mapping[str, Any]] = MODELS,
                 queries: Mapping[str, str] | None = None) -> Settings:
    return make_settings(url, models, queries)


@pytest.fixture
def source(prom_env: promenv.PromEnv) -> Iterator[PrometheusSource]:
    with open_source(slo_settings(prom_env.prometheus.url)) as s:
        yield s


def open_source(settings: Settings) -> PrometheusSource:
    assert settings.prometheus is not None
    return PrometheusSource(settings.prometheus, settings.defaults)


def share(prom_env: promenv.PromEnv, served: str, bound: float, pods: Sequence[int] | None = None) -> float:
    """The share the stand-in serves at ``bound``, over ``pods`` (default: all of the model's);
    every engine of a model finishes as many requests, so pods weigh by their engines."""
    chosen = [p for i, p in enumerate(prom_env.exporter.spec.pods)
              if p.served == served and (pods is None or i in pods)]
    return sum(p.engines * cdf(bound, p.queue_median) for p in chosen) / sum(p.engines for p in chosen)


def finished_in_window(prom_env: promenv.PromEnv, served: str, now: float) -> float:
    """Requests the stand-in finished over [now - WINDOW, now], all engines (Little's law)."""
    spec = next(m for m in prom_env.exporter.spec.models if m.served == served)
    trace = spec.trace()
    return (trace.integral(now) - trace.integral(now - WINDOW)) / spec.latency_seconds


def observe_shares(source: PrometheusSource, models: Sequence[ModelSettings], want: Mapping[str, float],
                   prom_env: promenv.PromEnv, engines: Mapping[str, float] | None = None
                   ) -> Mapping[str, Observation]:
    """Observe until every model in ``want`` reads that share over a whole window of requests
    (right after the session starts, the histograms are younger than the window). ``engines``:
    the share of a model's engines its query reads (default all)."""
    observed: Mapping[str, Observation] = {}
    served = {m.name: m.served_name for m in models}

    def settled() -> bool:
        nonlocal observed
        now = time.time()
        observed = source.observe(models, now=now)
        return all(
            abs(observed[name].signals.get("slo_on_time_ratio", -1) - value) <= 0.01
            and abs(observed[name].signals["slo_requests"]
                    / ((engines or {}).get(name, 1.0) * finished_in_window(prom_env, served[name], now)) - 1)
            <= 0.1
            for name, value in want.items())

    promenv.wait_for(settled, timeout=2 * WINDOW, what=f"on-time shares {dict(want)}", interval=1.0)
    return observed


def test_on_time_share_is_the_exporters(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess, source: PrometheusSource
) -> None:
    models = slo_settings(prom_env.prometheus.url).models
    small, mid = share(prom_env, SMALL, 1.0), share(prom_env, MID, 2.5)
    # Two pods added bound by bound ("1.0" and "1" are one bound): neither pod's own share.
    assert min(abs(small - share(prom_env, SMALL, 1.0, [i])) for i in (0, 1)) > 0.1
    observed = observe_shares(source, models, {"small": small, "mid": mid}, prom_env)
    # The same served model without an slo: every other signal, but no SLO keys.
    plain = observed["mid-plain"]
    assert plain.demand is not None
    assert set(plain.signals) == set(observed["mid"].signals) - SLO_KEYS
    assert sum(source.rejected_samples_total.values()) == 0


def test_one_query_for_every_slo_window_and_none_without_an_slo(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess
) -> None:
    with FakePrometheus(upstream=prom_env.prometheus.url) as proxy:
        with_slo = slo_settings(proxy.url, [
            {"name": "small", "servedModelName": SMALL, "capacityPerReplica": 10,
             "slo": {**SLO, "maxQueueTime": "1s"}},
            {"name": "mid", "servedModelName": MID, "capacityPerReplica": 4,
             "slo": {"onTime": 0.9, "maxQueueTime": "2.5s", "window": "2m"}},
        ])
        without = slo_settings(proxy.url, MODELS[2:])
        with open_source(with_slo) as source:
            observed = source.observe(with_slo.models, now=time.time())
            first = [q for q in proxy.queries() if "request_queue_time_seconds_count" in q]
            proxy.requests.clear()
            source.observe(without.models, now=time.time())
            second = [q for q in proxy.queries() if "request_queue_time_seconds_count" in q]
    assert len(first) == 1 and second == []
    # One group per window, each rendering its own: 2 groups x (a tag + the count's relabel).
    assert "[60s]" in first[0] and "[120s]" in first[0] and first[0].count("label_replace(") == 4
    assert all(set(o.signals) >= SLO_KEYS for o in observed.values())


def test_counter_reset_keeps_the_share(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess, source: PrometheusSource
) -> None:
    models = slo_settings(prom_env.prometheus.url).models[:2]
    want = {"small": share(prom_env, SMALL, 1.0), "mid": share(prom_env, MID, 2.5)}
    observe_shares(source, models, want, prom_env)
    exporter.control(reset=True)  # every pod restarts: all buckets and counts back to 0
    readings: list[tuple[float, Mapping[str, Observation]]] = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        now = time.time()
        readings.append((now, source.observe(models, now=now)))
        time.sleep(0.5)
    for now, observed in readings:
        for name, served in (("small", SMALL), ("mid", MID)):
            signals = observed[name].signals
            assert signals["slo_on_time_ratio"] == pytest.approx(want[name], abs=0.02)
            # increase() adds the counts after the reset to those before: no dip, no spike
            assert signals["slo_requests"] == pytest.approx(finished_in_window(prom_env, served, now), rel=0.15)
    assert sum(source.rejected_samples_total.values()) == 0


def test_overrides_per_model_and_for_all_models(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess
) -> None:
    # SMALL: its second pod only (bounds spelled "1"), one histogram without model_name, as a
    # per-model override may return. All others: the total from the +Inf bucket, not _count.
    one_pod = ('sum by (le) (increase(vllm:request_queue_time_seconds_bucket{{{matchers}},instance="'
               + exporter.targets[1] + '"}[{{window}}]))')
    from_buckets = ("sum by (model_name, le) (increase("
                    "vllm:request_queue_time_seconds_bucket{{{matchers}}}[{{window}}]))")
    models = [{**MODELS[0], "slo": {**SLO, "maxQueueTime": "1s"}, "queries": {"slo_on_time": one_pod}},
              {**MODELS[1], "slo": {**SLO, "maxQueueTime": "0.8s"}}]
    with FakePrometheus(upstream=prom_env.prometheus.url) as proxy:
        settings = slo_settings(proxy.url, models, queries={"slo_on_time": from_buckets})
        with open_source(settings) as source:
            want = {"small": share(prom_env, SMALL, 1.0, [1]), "mid": share(prom_env, MID, 0.8)}
            observe_shares(source, settings.models, want, prom_env, engines={"small": 1 / 3})
            assert sum(source.errors_total.values()) == 0
            assert sum(source.rejected_samples_total.values()) == 0
        [query] = {q for q in proxy.queries() if "request_queue_time_seconds" in q and "histogram_quantile" not in q}
    assert exporter.targets[1] in query and "_count" not in query


def test_on_time_history_reads_the_live_share_back(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess, source: PrometheusSource
) -> None:
    """What a restarted SLO tuner reads back at startup (``Engine.backfill``): the live signal's
    query as a range query. Every step reads what the live signal read at that instant (the
    same query, both of SMALL's pods added bound by bound), and after the histograms settled,
    the exporter's share."""
    models = slo_settings(prom_env.prometheus.url).models
    want = {"small": share(prom_env, SMALL, 1.0), "mid": share(prom_env, MID, 2.5)}
    observe_shares(source, models[:2], want, prom_env)
    time.sleep(5)  # samples scraped before `end` have all landed (1 s scrapes)
    now = time.time() - 3
    for m in models[:2]:
        points = source.on_time_history(m, start=now - 2 * WINDOW, end=now, step_seconds=2)
        times = [t for t, _, _ in points]
        assert times == sorted(times) and now - 2 * WINDOW <= times[0] and times[-1] < now
        for t, value, requests in points[-5:]:
            live = source.observe([m], now=t)[m.name].signals
            assert live["slo_on_time_ratio"] == pytest.approx(value, abs=1e-9), (t, points)
            assert live["slo_requests"] == pytest.approx(requests, rel=1e-9)
        # Scrape timing under load moves a two-pod share by a few points for a second or two
        # (each pod's increase() sees its own scrapes); the median step is the exporter's share.
        assert float(np.median([v for _, v, _ in points[-10:]])) == pytest.approx(want[m.name], abs=0.01)
    assert source.on_time_history(models[2], start=now - WINDOW, end=now, step_seconds=15) == []
    assert sum(source.rejected_samples_total.values()) == 0
