"""Cold-start estimation: stages of one pod, the decayed robust p90, and the lead time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.core.coldstart import (
    DurationSample,
    NodeTimeline,
    PodTimeline,
    StartupSample,
    estimate_cold_start,
    lead_seconds,
    robust_p90,
    startup_sample,
    weighted_quantile,
)
from scaler.core.config import ColdStartSettings
from scaler.core.model import ColdStart

NOW = 1_800_000_000.0
DAY = 86400.0
SETTINGS = ColdStartSettings(initial=300.0, learn=True, minSamples=3, nodeProvisioning=240.0)


@pytest.mark.parametrize(("pod", "wait", "startup"), [
    pytest.param(PodTimeline("p", created=0, scheduled=2, node_created=-500, node_ready=-400, ready=310),
                 0.0, 310.0, id="existing-node"),
    pytest.param(PodTimeline("p", created=0, scheduled=185, node_created=5, node_ready=182, ready=610),
                 182.0, 428.0, id="waited-for-a-new-node"),
    pytest.param(PodTimeline("p", created=0, scheduled=100, node_created=5, node_ready=300, ready=500),
                 100.0, 400.0, id="node-ready-after-scheduling-bounded-by-the-queue"),
    pytest.param(PodTimeline("p", created=0, scheduled=50, node_created=5, ready=450),
                 50.0, 400.0, id="node-ready-unknown-scheduling-is-the-wait"),
    pytest.param(PodTimeline("p", created=0, scheduled=120, ready=500),
                 None, 380.0, id="node-gone-scheduling-wait-left-out"),
    pytest.param(PodTimeline("p", created=0, scheduled=2, node_created=-10, node_ready=-5),
                 0.0, None, id="not-ready-yet"),
    pytest.param(PodTimeline("p", created=100, ready=50), None, None, id="ready-before-created"),
    pytest.param(PodTimeline("p", created=0), None, None, id="just-created"),
])
def test_pod_stages(pod: PodTimeline, wait: float | None, startup: float | None) -> None:
    assert pod.node_wait_seconds == wait
    assert pod.startup_seconds == startup


def test_implausible_startups_are_not_samples() -> None:
    stuck = PodTimeline("p", created=0, scheduled=1, node_created=-1, ready=7 * 3600)
    assert startup_sample(stuck) is None
    assert startup_sample(PodTimeline("p", created=0, scheduled=1, node_created=-1, ready=60)) == \
        StartupSample("p", at=60, startup_seconds=60, node_wait_seconds=0.0)


@pytest.mark.parametrize(("values", "weights", "q", "expected"), [
    pytest.param([5.0], [1.0], 0.9, 5.0, id="one-value"),
    pytest.param([300.0, 100.0, 200.0], [1, 1, 1], 0.9, 300.0, id="three-samples-p90-is-the-slowest"),
    pytest.param([300.0, 100.0, 200.0], [1, 1, 1], 0.5, 200.0, id="median"),
    pytest.param([float(v) for v in range(1, 11)], [1] * 10, 0.9, 9.0, id="ten-values"),
    pytest.param([float(v) for v in range(1, 11)], [1] * 10, 0.91, 10.0, id="just-above-the-ninth"),
    pytest.param([100.0, 500.0], [1, 3], 0.5, 500.0, id="weight-moves-the-median"),
    pytest.param([100.0, 500.0], [1000, 1], 0.99, 100.0, id="negligible-weight-negligible-influence"),
    pytest.param([100.0, 500.0], [0, 1], 0.1, 500.0, id="zero-weight-ignored"),
])
def test_weighted_quantile(values: list[float], weights: list[float], q: float, expected: float) -> None:
    assert weighted_quantile(values, weights, q) == pytest.approx(expected)


def test_weighted_quantile_rejects_nothing_to_weigh() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        weighted_quantile([], [], 0.5)
    with pytest.raises(ValueError, match="zero"):
        weighted_quantile([1.0], [0.0], 0.5)


def samples(*seconds: float, at: float = NOW, wait: float = 0.0) -> list[StartupSample]:
    return [StartupSample(f"p{i}-{at}", at=at, startup_seconds=s, node_wait_seconds=wait)
            for i, s in enumerate(seconds)]


@pytest.mark.parametrize(("given_samples", "expected"), [
    pytest.param([], ColdStart(300.0, 240.0, 0, False), id="nothing-seen-initial"),
    pytest.param(samples(100, 120), ColdStart(300.0, 240.0, 2, False), id="below-minSamples-initial"),
    pytest.param(samples(100, 120, 140), ColdStart(140.0, 240.0, 3, True), id="learned"),
    pytest.param(samples(300, 310, 320, 330, 7200), ColdStart(330.0, 240.0, 5, True),
                 id="a-stuck-pod-is-far-out"),
    pytest.param(samples(60, 60, 60, 400, 400), ColdStart(400.0, 240.0, 5, True),
                 id="bimodal-cached-image-kept"),
    pytest.param(samples(100, 100, 100, 100, 100, 400), ColdStart(400.0, 240.0, 6, True),
                 id="one-slow-in-six-is-the-tail-not-an-outlier"),
])
def test_estimate(given_samples: list[StartupSample], expected: ColdStart) -> None:
    got = estimate_cold_start(given_samples, SETTINGS, now=NOW)
    assert got.samples == expected.samples and got.learned == expected.learned
    assert got.pod_startup_seconds == pytest.approx(expected.pod_startup_seconds, abs=1.0)
    assert got.node_provisioning_seconds == expected.node_provisioning_seconds


@pytest.mark.parametrize(("days_ago", "expected"), [
    pytest.param(7, 600.0, id="a-week-old-still-28pct-of-the-weight"),
    pytest.param(14, 220.0, id="two-weeks-old-7pct-below-the-tail"),
])
def test_recent_startups_weigh_more(days_ago: float, expected: float) -> None:
    """Images got cached: three fresh ~200 s startups against six old 600 s ones (half life 3 d)."""
    old = samples(600, 600, 600, 600, 600, 600, at=NOW - days_ago * DAY)
    fresh = samples(200, 210, 220)
    assert estimate_cold_start(old + fresh, SETTINGS, now=NOW).pod_startup_seconds == expected
    flat = estimate_cold_start(old + fresh, SETTINGS, now=NOW, half_life_seconds=1e12)
    assert flat.pod_startup_seconds == 600.0


def test_node_provisioning_from_nodes_then_node_waits_then_config() -> None:
    nodes = [NodeTimeline(f"n{i}", created=0, ready=s) for i, s in enumerate((150.0, 170.0, 190.0))]
    waited = samples(400, 410, 420, wait=200.0)
    assert estimate_cold_start(waited, SETTINGS, now=NOW, nodes=nodes).node_provisioning_seconds == 190.0
    assert estimate_cold_start(waited, SETTINGS, now=NOW, nodes=nodes[:2]).node_provisioning_seconds == 200.0
    assert estimate_cold_start(samples(400, 410, 420), SETTINGS, now=NOW,
                               nodes=nodes[:2]).node_provisioning_seconds == 240.0


def test_one_sample_per_pod_and_timelines_accepted() -> None:
    twice = samples(100, 120, 140) + samples(100, 120, 140)  # same uids: the persisted + live copy
    assert estimate_cold_start(twice, SETTINGS, now=NOW).samples == 3
    pods = [PodTimeline(f"p{i}", created=0, scheduled=1, node_created=-9, ready=r)
            for i, r in enumerate((100.0, 120.0, 140.0, None))]
    nodes = [DurationSample(f"n{i}", at=NOW, seconds=s) for i, s in enumerate((10.0, 20.0, 30.0))]
    assert estimate_cold_start(pods, SETTINGS, now=NOW, nodes=nodes) == ColdStart(140.0, 30.0, 3, True)


@pytest.mark.parametrize(("spare", "expected"), [
    pytest.param(True, 455.0, id="spare-gpu-no-node-wait"),
    pytest.param(False, 640.0, id="full-pool-node-wait"),
    pytest.param(None, 640.0, id="unknown-counts-the-node-wait"),
])
def test_lead_seconds(spare: bool | None, expected: float) -> None:
    cold = ColdStart(pod_startup_seconds=425.0, node_provisioning_seconds=185.0, samples=5, learned=True)
    assert lead_seconds(cold, pool_has_spare=spare, decision_delay_seconds=30.0) == expected


durations = st.floats(min_value=1.0, max_value=6 * 3600.0, allow_nan=False)
ages = st.floats(min_value=0.0, max_value=30 * DAY, allow_nan=False)


@given(st.lists(st.tuples(ages, durations), min_size=1, max_size=40))
def test_p90_lies_within_the_samples(rows: list[tuple[float, float]]) -> None:
    p90 = robust_p90([(NOW - age, s) for age, s in rows], now=NOW, half_life_seconds=3 * DAY)
    assert p90 is not None
    assert min(s for _, s in rows) - 1e-9 <= p90 <= max(s for _, s in rows) + 1e-9


@given(st.lists(durations, min_size=1, max_size=30), st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_quantile_is_monotone_in_q(values: list[float], q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    weights = [1.0] * len(values)
    assert weighted_quantile(values, weights, lo) <= weighted_quantile(values, weights, hi) + 1e-9


@given(st.lists(durations, min_size=1, max_size=30), durations)
def test_a_slower_startup_never_lowers_the_quantile(values: list[float], extra: float) -> None:
    weights = [1.0] * len(values)
    before = weighted_quantile(values, weights, 0.9)
    after = weighted_quantile([*values, max(extra, max(values))], [*weights, 1.0], 0.9)
    assert after >= before - 1e-9


@given(st.lists(st.tuples(ages, durations), min_size=0, max_size=20), st.integers(1, 10))
def test_estimate_is_initial_until_min_samples(rows: list[tuple[float, float]], min_samples: int) -> None:
    settings = ColdStartSettings(initial=300.0, learn=True, minSamples=min_samples, nodeProvisioning=0.0)
    given_samples = [StartupSample(f"p{i}", at=NOW - a, startup_seconds=s) for i, (a, s) in enumerate(rows)]
    cold = estimate_cold_start(given_samples, settings, now=NOW)
    assert cold.learned == (len(rows) >= min_samples)
    if not cold.learned:
        assert cold.pod_startup_seconds == 300.0
    assert math.isfinite(cold.pod_startup_seconds) and cold.pod_startup_seconds > 0
