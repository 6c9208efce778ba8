"""Freshness from the scrape time and partial data, without a server: the target watch's rule,
the decision's validity counting from ``sampled_at``, the latency histogram's buckets."""

from __future__ import annotations

import logging

import pytest

from scaler.core.config import parse_settings
from scaler.core.decision import DecisionInputs, DecisionState, decide
from scaler.core.model import Reason
from scaler.edges.prometheus.counters import LATENCY_BUCKETS, SourceCounters
from scaler.edges.prometheus.targets import TargetWatch

NOW = 1_767_225_600.0
MODEL = parse_settings({
    "prometheus": {"url": "http://127.0.0.1:1"},
    "defaults": {"staleAfter": "2m", "forecast": False, "scaleDown": {"stabilization": "0s"}},
    "models": [{"name": "a", "capacityPerReplica": 10}],
}).settings.models[0]


def test_fewer_targets_than_recently_is_partial_until_the_window_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = TargetWatch()
    caplog.set_level(logging.INFO)
    counts = [(0, 2, False), (1, 2, False), (2, 1, True), (30, 1, True), (60, 1, True),
              (61.5, 1, False), (62, 2, False), (63, 0, True), (64, None, True), (65, 2, False)]
    for t, reporting, partial in counts:
        assert watch.check("a", reporting, now=NOW + t, window=60.0) is partial, t
    # one line when it starts, one when it ends: never one a refresh
    lines = [r.getMessage() for r in caplog.records]
    assert sum("demand is unknown" in line for line in lines) == 2
    assert sum("demand is read again" in line for line in lines) == 2


def test_an_unknown_count_alone_is_not_partial_and_forgotten_models_go() -> None:
    watch = TargetWatch()
    assert watch.check("a", None, now=NOW, window=60.0) is False
    assert watch.check("b", 3, now=NOW, window=60.0) is False
    assert watch.check("b", 2, now=NOW + 1, window=60.0) is True
    assert watch.partial_models == 1
    watch.keep(["a"])
    assert watch.partial_models == 0
    assert watch.check("b", 2, now=NOW + 2, window=60.0) is False  # no memory of 3


def test_validity_counts_from_the_scrape_time_not_the_refresh() -> None:
    inputs = DecisionInputs(demand=35.0, forecast=None, lead_seconds=60.0, sampled_at=NOW - 20)
    decision, state = decide(inputs, MODEL, DecisionState(), now=NOW)
    assert decision.valid and decision.replicas == 4
    assert decision.sampled_at == NOW - 20 and decision.expires_at == NOW - 20 + 120
    # the hold ends staleAfter after the data was scraped, not after it was decided
    held, _ = decide(DecisionInputs(demand=None, forecast=None, lead_seconds=60.0), MODEL, state,
                     now=NOW + 90)
    assert held.reason is Reason.HOLD and held.replicas == 4 and held.expires_at == NOW + 100
    gone, _ = decide(DecisionInputs(demand=None, forecast=None, lead_seconds=60.0), MODEL, state,
                     now=NOW + 101)
    assert not gone.valid and gone.reason is Reason.NO_DATA


def test_data_older_than_stale_after_is_not_decided_on() -> None:
    fresh, state = decide(DecisionInputs(demand=35.0, forecast=None, lead_seconds=60.0),
                          MODEL, DecisionState(), now=NOW)
    old = DecisionInputs(demand=5.0, forecast=None, lead_seconds=60.0, sampled_at=NOW - 10)
    decision, _ = decide(old, MODEL, state, now=NOW + 115)
    assert decision.reason is Reason.HOLD and decision.replicas == fresh.replicas == 4
    # a sample time in the future (clock skew) counts as now, never as fresher than now
    skewed, _ = decide(DecisionInputs(demand=5.0, forecast=None, lead_seconds=60.0,
                                      sampled_at=NOW + 500), MODEL, DecisionState(), now=NOW)
    assert skewed.expires_at == NOW + 120


def test_latency_buckets() -> None:
    counters = SourceCounters()
    for seconds in (0.001, 0.3, 2.0, 2.0, 120.0):
        counters._count_request("instant", seconds)
    buckets = counters.latency_buckets["instant"]
    assert sum(buckets) == counters.requests_total["instant"] == 5
    assert buckets[0] == 1 and buckets[LATENCY_BUCKETS.index(0.5)] == 1
    assert buckets[LATENCY_BUCKETS.index(2.5)] == 2 and buckets[-1] == 1
    assert counters.request_seconds_total["instant"] == pytest.approx(124.301)
