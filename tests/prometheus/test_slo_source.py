"""The SLO signal against the tiny local server: every degenerate histogram answer, as a table.

An answer is what ``sum by (model_name, le) (increase(...))`` returns: cumulative request counts
by bound, the total under ``le="+Inf"``. Model ``a`` has an slo (maxQueueTime 1s unless a case
says otherwise); model ``b`` has none and must never get the SLO keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from scaler.core.config import Settings, parse_settings
from scaler.edges.prometheus import promql
from scaler.edges.prometheus.source import PrometheusSource
from tests.prometheus.fakeprom import FakePrometheus, Reply, Request, matrix, vector

NOW = 1_767_225_600.0
A, B = "llama", "qwen"
SLO_KEYS = {"slo_on_time_ratio", "slo_requests"}


def settings_for(url: str, max_queue_time: str = "1s", **model: Any) -> Settings:
    return parse_settings({
        "prometheus": {"url": url, "timeout": "2s", "retries": 0},
        "models": [
            {"name": "a", "servedModelName": A, "capacityPerReplica": 1,
             "slo": {"onTime": 0.99, "maxQueueTime": max_queue_time, "window": "30m"}, **model},
            {"name": "b", "servedModelName": B, "capacityPerReplica": 1},
        ],
    }).settings


def histogram(counts: Mapping[str, str], at: float = NOW, **labels: str) -> list[tuple[dict[str, str], str, float]]:
    return [({"model_name": A, "le": le, **labels}, value, at) for le, value in counts.items()]


def is_slo(request: Request) -> bool:
    return "request_queue_time_seconds_count" in request.query or "gateway" in request.query


def serve(fake: FakePrometheus, slo: Reply) -> None:
    """Demand 5 for both models; ``slo`` for the SLO query; nothing for the rest."""
    def handle(request: Request) -> Reply:
        if is_slo(request):
            return slo
        if "num_requests_waiting" in request.query and "deriv" not in request.query \
                and "num_requests_running" in request.query:
            return Reply(body=vector(({"model_name": A}, "5", NOW), ({"model_name": B}, "5", NOW)))
        return Reply(body=vector())

    fake.handler = handle


def observe(fake: FakePrometheus, settings: Settings) -> tuple[dict[str, float], PrometheusSource]:
    assert settings.prometheus is not None
    with PrometheusSource(settings.prometheus, settings.defaults, sleep=lambda s: None) as source:
        observed = source.observe(settings.models, now=NOW)
    assert not SLO_KEYS & set(observed["b"].signals)
    assert observed["a"].demand == 5.0  # the SLO never costs the demand
    return dict(observed["a"].signals), source


@pytest.fixture
def fake() -> Any:
    with FakePrometheus() as server:
        yield server


OK = {"0.5": "50", "1.0": "80", "1.5": "95", "+Inf": "100"}


@pytest.mark.parametrize(("series", "max_queue_time", "expected", "rejected"), [
    pytest.param(histogram(OK), "1s", {"slo_on_time_ratio": 0.8, "slo_requests": 100.0}, None, id="at-a-bound"),
    pytest.param(histogram(OK), "1.2s", {"slo_on_time_ratio": 0.8, "slo_requests": 100.0}, None,
                 id="between-bounds-reads-the-lower"),
    pytest.param(histogram({"0.3": "10", "+Inf": "20"}), "300ms", {"slo_on_time_ratio": 0.5, "slo_requests": 20.0},
                 None, id="decimal-bound-equals-the-config"),
    pytest.param(histogram({"1": "30", "1.0": "50", "+Inf": "100"}), "1s",
                 {"slo_on_time_ratio": 0.8, "slo_requests": 100.0}, None, id="two-spellings-of-one-bound-add-up"),
    pytest.param(histogram({"1e+00": "80", "+Inf": "100"}), "1s", {"slo_on_time_ratio": 0.8, "slo_requests": 100.0},
                 None, id="exponent-spelling"),
    pytest.param(histogram({"1.0": "100", "+Inf": "100"}), "1s", {"slo_on_time_ratio": 1.0, "slo_requests": 100.0},
                 None, id="all-on-time"),
    pytest.param(histogram({"1.0": "0", "+Inf": "0"}), "1s", {"slo_requests": 0.0}, None,
                 id="no-request-finished-no-ratio"),
    pytest.param([], "1s", {}, None, id="empty"),
    pytest.param(histogram(OK), "100ms", {}, None, id="below-the-smallest-bound"),
    pytest.param(histogram({"0.5": "5", "1.0": "8"}), "1s", {}, None, id="no-total"),
    pytest.param(histogram({"1.0": "NaN", "+Inf": "100"}), "1s", {}, "nan", id="nan"),
    pytest.param(histogram({"1.0": "80", "+Inf": "+Inf"}), "1s", {}, "inf", id="inf"),
    pytest.param(histogram({"1.0": "-3", "+Inf": "100"}), "1s", {}, "negative", id="negative"),
    pytest.param(histogram({"1.0": "120", "+Inf": "100"}), "1s", {}, "out_of_range", id="share-above-one"),
    pytest.param(histogram({"1.0": "80", "+Inf": "100"}, engine="0")
                 + histogram({"1.0": "70", "+Inf": "90"}, engine="1"), "1s", {}, "ambiguous", id="several-series"),
    pytest.param(histogram({"1.0": "80"}) + histogram({"+Inf": "100"}, at=NOW - 3600), "1s", {}, "stale",
                 id="stale-total"),
    pytest.param([*histogram({"1.0": "80", "+Inf": "100"}), ({"model_name": A}, "7", NOW)], "1s",
                 {"slo_on_time_ratio": 0.8, "slo_requests": 100.0}, "unexpected_series", id="series-without-le"),
    pytest.param([*histogram({"1.0": "80", "+Inf": "100"}), ({"model_name": "other", "le": "1.0"}, "7", NOW)], "1s",
                 {"slo_on_time_ratio": 0.8, "slo_requests": 100.0}, "unexpected_series", id="unknown-model"),
])
def test_degenerate_histograms(
    fake: FakePrometheus, series: Sequence[tuple[dict[str, str], str, float]], max_queue_time: str,
    expected: dict[str, float], rejected: str | None,
) -> None:
    serve(fake, Reply(body=vector(*series)))
    signals, source = observe(fake, settings_for(fake.url, max_queue_time))
    assert {k: v for k, v in signals.items() if k in SLO_KEYS} == pytest.approx(expected)
    assert {k: v for k, v in source.rejected_samples_total.items() if v} == ({rejected: 1} if rejected else {})


def test_share_a_rounding_error_above_one_is_one(fake: FakePrometheus) -> None:
    serve(fake, Reply(body=vector(*histogram({"1.0": repr(100 * (1 + 1e-12)), "+Inf": "100"}))))
    signals, source = observe(fake, settings_for(fake.url))
    assert signals["slo_on_time_ratio"] == 1.0
    assert sum(source.rejected_samples_total.values()) == 0


def test_no_slo_no_query(fake: FakePrometheus) -> None:
    serve(fake, Reply(500))
    settings = settings_for(fake.url)
    assert settings.prometheus is not None
    with PrometheusSource(settings.prometheus, settings.defaults) as source:
        source.observe(settings.models[1:], now=NOW)
    assert not any(is_slo(r) for r in fake.requests)
    assert len(fake.queries()) == 1 + len(promql.AUX_SIGNALS)


def test_failing_slo_query_drops_only_the_slo(fake: FakePrometheus) -> None:
    serve(fake, Reply(503))
    signals, source = observe(fake, settings_for(fake.url))
    assert not SLO_KEYS & set(signals)
    assert source.errors_total["http_5xx"] == 1


def test_per_model_override_answers_one_histogram_with_any_labels(fake: FakePrometheus) -> None:
    override = 'sum by (le) (increase(gateway_wait_seconds_bucket{route="/a"}[{{window}}]))'
    serve(fake, Reply(body=vector(({"le": "1", "route": "/a"}, "9", NOW), ({"le": "+Inf", "route": "/a"}, "10", NOW))))
    signals, _ = observe(fake, settings_for(fake.url, queries={"slo_on_time": override}))
    assert signals["slo_on_time_ratio"] == pytest.approx(0.9)
    [query] = [q for q in fake.queries() if "gateway" in q]
    assert query == 'sum by (le) (increase(gateway_wait_seconds_bucket{route="/a"}[1800s]))'


def test_on_time_history_reads_the_range_bound_by_bound(fake: FakePrometheus) -> None:
    """What a restarted tuner reads back: the live query as a range query, read bound by bound at
    each step (bounds spelled "1.0" and "1" by two pods' clients add up). A step without
    ``+Inf`` is left out; one with nothing finished is an idle hour (no share, 0 requests); a NaN
    bucket or another model's series is refused and counted."""
    step, start = 3600, NOW - 4 * 3600
    times = [start + i * step for i in range(4)]

    def series(le: str, values: Sequence[str]) -> tuple[dict[str, str], list[tuple[float, str]]]:
        return {"model_name": A, "le": le}, list(zip(times, values, strict=True))

    answer = matrix(series("1.0", ["30", "40", "0", "NaN"]), series("1", ["40", "45", "0", "40"]),
                    series("+Inf", ["100", "100", "0", "100"]))
    answer["data"]["result"][2]["values"].pop(1)  # no +Inf at the second step
    # A series of another model (a broken override) is refused, not added in.
    answer["data"]["result"].append({"metric": {"model_name": B, "le": "1.0"},
                                     "values": [[t, "99"] for t in times]})
    requests: list[Request] = []

    def handle(request: Request) -> Reply:
        requests.append(request)
        return Reply(body=answer)

    fake.handler = handle
    settings = settings_for(fake.url)
    assert settings.prometheus is not None
    with PrometheusSource(settings.prometheus, settings.defaults, sleep=lambda s: None) as source:
        points = source.on_time_history(settings.models[0], start=start, end=NOW, step_seconds=step)
        assert source.on_time_history(settings.models[1], start=start, end=NOW, step_seconds=step) == []
        rejected = {k: v for k, v in source.rejected_samples_total.items() if v}
    assert points == [(times[0], 0.7, 100.0), (times[2], None, 0.0)]
    assert rejected == {"nan": 1, "unexpected_series": 1}
    (request,) = requests  # the model without an slo asks nothing
    assert is_slo(request) and float(request.params["step"]) == step
    assert float(request.params["start"]) == start and float(request.params["end"]) == times[-1]
