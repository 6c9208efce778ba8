"""PrometheusSource against a real Prometheus: live scrapes of the trace-driven vLLM exporter
(two models, three pods, one on the old metric names) and 15 days of backfilled history.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from scaler.core.config import ModelSettings, Settings, parse_settings
from scaler.core.model import Observation
from scaler.edges.prometheus import promql
from scaler.edges.prometheus.source import PrometheusSource
from tests.prometheus.conftest import MID, SMALL
from tests.prometheus.fakeprom import FakePrometheus
from tests.support import promenv

pytestmark = pytest.mark.prometheus

LATENCY = 4.0  # ModelSpec.latency_seconds default: completions/s = concurrency / 4


def make_settings(url: str, models: Sequence[Mapping[str, Any]] | None = None,
                  queries: Mapping[str, str] | None = None) -> Settings:
    return parse_settings({
        "prometheus": {"url": url, "timeout": "5s", "retries": 1},
        "defaults": {"queries": dict(queries or {})},
        "models": list(models or [
            {"name": "small", "servedModelName": SMALL, "capacityPerReplica": 10},
            {"name": "mid", "servedModelName": MID, "capacityPerReplica": 4},
        ]),
    }).settings


@pytest.fixture
def source(prom_env: promenv.PromEnv) -> Iterator[PrometheusSource]:
    settings = make_settings(prom_env.prometheus.url)
    assert settings.prometheus is not None
    with PrometheusSource(settings.prometheus, settings.defaults) as s:
        yield s


def observe_until(source: PrometheusSource, models: Sequence[ModelSettings],
                  want: Mapping[str, float], timeout: float = 15.0) -> Mapping[str, Observation]:
    """Observe until every model's demand is ``want`` (the next scrape has to happen first)."""
    observed: Mapping[str, Observation] = {}

    def done() -> bool:
        nonlocal observed
        observed = source.observe(models, now=time.time())
        return all(observed[k].demand == v for k, v in want.items())

    promenv.wait_for(done, timeout=timeout, what=f"demand {dict(want)}", interval=0.25)
    return observed


def test_live_signals_for_two_models_in_one_query_each(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess
) -> None:
    exporter.control(pin={SMALL: 60, MID: 5})
    with FakePrometheus(upstream=prom_env.prometheus.url) as proxy:
        settings = make_settings(proxy.url)
        assert settings.prometheus is not None
        with PrometheusSource(settings.prometheus, settings.defaults) as source:
            observe_until(source, settings.models, {"small": 60.0, "mid": 5.0})
            proxy.requests.clear()
            observed = source.observe(settings.models, now=(asked := time.time()))
        # One request per signal, each for both models (regex over the escaped served names).
        queries = proxy.queries()
        assert len(queries) == 1 + len(promql.AUX_SIGNALS)
        assert all(promql.quote(promql.regex_escape(MID))[1:-1] in q for q in queries)
    small, mid = observed["small"], observed["mid"]
    assert small.demand == 60.0 and mid.demand == 5.0
    # 60 over 3 engines (max 16 running each): 48 running + 12 waiting; pods, not engines.
    assert (small.signals["running"], small.signals["waiting"]) == (48.0, 12.0)
    assert (small.replicas, mid.replicas) == (2, 1)
    assert small.signals["kv_cache_usage"] == pytest.approx(0.9)
    # The legacy model exports vllm:gpu_cache_usage_perc and time_per_output_token_seconds only.
    assert mid.signals["kv_cache_usage"] == pytest.approx(0.9 * 5 / 16)
    for obs in (small, mid):
        assert set(obs.signals) == set(promql.AUX_SIGNALS) - {"replicas", promql.SAMPLED_SIGNAL}
        # sampled when the engines were last scraped (every second here), not at the query time
        assert obs.sampled_at is not None and asked - 3.0 < obs.sampled_at < asked
        assert 0.1 < obs.signals["ttft_p95_seconds"] < 1.0
        assert 0.01 < obs.signals["inter_token_latency_p95_seconds"] < 0.25
        assert obs.signals["completions_per_second"] > 0
        assert all(math.isfinite(v) and v >= 0 for v in obs.signals.values())


def test_hostile_served_names_match_nothing_and_break_nothing(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess,
    source: PrometheusSource,
) -> None:
    exporter.control(pin={SMALL: 7})
    models = make_settings(prom_env.prometheus.url, [
        {"name": "small", "servedModelName": SMALL, "capacityPerReplica": 1},
        {"name": "inject", "servedModelName": 'x"} or vector(1) or {a="', "capacityPerReplica": 1},
        {"name": "wildcard", "servedModelName": ".*", "capacityPerReplica": 1},
        {"name": "dot", "servedModelName": SMALL[:-1] + ".", "capacityPerReplica": 1},
        {"name": "alt", "servedModelName": f"nothing|{SMALL}", "capacityPerReplica": 1},
        {"name": "mid", "servedModelName": MID, "capacityPerReplica": 1},
    ]).models
    observed = observe_until(source, models, {"small": 7.0})
    assert {k: o.demand for k, o in observed.items() if k not in ("small", "mid")} == {
        "inject": None, "wildcard": None, "dot": None, "alt": None}
    assert observed["mid"].demand is not None  # quote + backslash in a real label value
    assert sum(source.errors_total.values()) == 0


def expected_concurrency(prom_env: promenv.PromEnv, served: str, times: np.ndarray) -> np.ndarray:
    """What the backfill wrote: round(trace) per minute; inside a gap, the last sample for the
    5-minute lookback, then NaN. Exactly 5 minutes is -1 (either: Prometheus 2.x includes the
    lookback's left end, 3.x does not)."""
    spec = next(m for m in prom_env.exporter.spec.models if m.served == served)
    trace = spec.trace()
    out = np.full(len(times), np.nan)
    last_sample, last_value = -math.inf, math.nan
    for i, t in enumerate(times):
        if not trace.is_gap(t):
            last_sample, last_value = t, round(trace.at(t))
            out[i] = last_value
        elif t - last_sample < 300:
            out[i] = last_value
        elif t - last_sample == 300:
            out[i] = -1
    return out


def test_history_is_the_backfilled_trace(prom_env: promenv.PromEnv, source: PrometheusSource) -> None:
    model = make_settings(prom_env.prometheus.url).models[0]
    end = prom_env.history_end
    start = end - 16 * 86400  # one day more than the backfill: NaN there, not zero
    series = source.history(model, start=start, end=end, step_seconds=60)
    assert len(series) == 16 * 1440
    assert source.requests_total["range"] == 3  # 23,040 points in chunks of <= 10,000
    times = series.times()
    expected = expected_concurrency(prom_env, SMALL, times)
    expected[times < prom_env.history_start] = np.nan
    either = expected == -1
    np.testing.assert_array_equal(series.values[~either], expected[~either])
    gaps = np.isnan(series.values) & (times >= prom_env.history_start)
    assert gaps.sum() > 100  # the trace's all-zero buckets became real gaps, kept as NaN
    assert np.isnan(series.values[times < prom_env.history_start]).all()


def test_prometheus_really_rejects_more_than_11000_points(prom_env: promenv.PromEnv) -> None:
    params = {"query": "vllm:num_requests_running", "start": prom_env.history_start,
              "end": prom_env.history_start + 11_001 * 60, "step": 60}
    url = f"{prom_env.prometheus.url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(url, timeout=10).close()
    assert raised.value.code == 400
    assert b"11,000 points" in raised.value.read()
    raised.value.close()


def test_arrival_history_survives_the_counter_reset(
    prom_env: promenv.PromEnv, source: PrometheusSource
) -> None:
    model = make_settings(prom_env.prometheus.url, [
        {"name": "mid", "servedModelName": MID, "capacityPerReplica": 1, "demand": "arrivals"},
    ]).models[0]
    reset = prom_env.history_end - promenv.COUNTER_RESET_AGO
    start = reset - 6 * 3600
    series = source.history(model, start=start, end=reset + 6 * 3600, step_seconds=60)
    spec = next(m for m in prom_env.exporter.spec.models if m.served == MID)
    trace = spec.trace()
    # The trace repeats along the wall clock, so where its collection gaps (no samples) fall in
    # this window depends on when the suite runs (CI once found 160 of 720 minutes in one).
    # Judged on the minutes the trace has data for, the 5-minute lookback after a gap aside.
    times = series.times()
    covered = np.array([not any(trace.is_gap(t - lag) for lag in range(0, 360, 60)) for t in times])
    assert covered.sum() > 0.5 * len(series)
    assert np.isfinite(series.values[covered]).mean() > 0.95
    values = series.values[np.isfinite(series.values)]
    assert (values >= 0).all()
    # Completions/s = concurrency / latency; the queue-growth term is small at 10-min steps.
    peak = max(trace.at(t) for t in times) / LATENCY
    assert values.max() < 1.5 * peak  # a reset read as a counter drop would spike or go negative
    # Right after the reset: the first minute with data behind it (should it fall in a gap)
    # whose 2-minute rate window sees one trace bucket. Across a bucket's step the gauges' deriv()
    # adds the step itself, as it should, and where steps fall depends on the wall clock (CI at
    # 06:03 UTC read 2.56 for a bucket of 1.37).
    def flat(t: float) -> bool:
        return len({trace.at(t - lag) for lag in range(0, 181, 60)}) == 1

    after = next(i for i in range(round((reset - start) / 60) + 2, len(times))
                 if covered[i] and flat(times[i]))
    assert series.values[after] == pytest.approx(trace.at(times[after]) / LATENCY, rel=0.3)


def test_live_counter_reset_and_arrivals(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess
) -> None:
    settings = make_settings(prom_env.prometheus.url, [
        {"name": "small", "servedModelName": SMALL, "capacityPerReplica": 1, "demand": "arrivals"},
    ])
    assert settings.prometheus is not None
    spec = next(m for m in exporter.spec.models if m.served == SMALL)
    trace = spec.trace()
    exporter.control(reset=True)  # every counter back to 0, as when pods restart
    with PrometheusSource(settings.prometheus, settings.defaults, rate_window_seconds=5) as source:
        seen: list[Observation] = []

        def settled() -> bool:
            obs = source.observe(settings.models, now=time.time())["small"]
            seen.append(obs)
            expected = trace.at(time.time()) / LATENCY
            rate = obs.signals.get("completions_per_second")
            # arrivals = completions + d(running + waiting)/dt: equal once the gauges are steady
            return (rate is not None and abs(rate - expected) < 0.1 * expected
                    and obs.demand is not None and abs(obs.demand - expected) < 0.2 * expected)

        promenv.wait_for(settled, timeout=15, what="completion rate after a counter reset",
                         interval=0.5)
    rates = [o.signals["completions_per_second"] for o in seen if "completions_per_second" in o.signals]
    assert all(r >= 0 for r in rates)  # a counter reset never reads as negative completions
    assert all(o.demand is None or o.demand >= 0 for o in seen)
