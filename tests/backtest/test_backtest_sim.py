"""The fluid model and KEDA/HPA rules of EVALUATION.md, as arithmetic tables."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest

from scaler.backtest.policies import ReactiveQueue, ReactiveUtil, Static
from scaler.backtest.sim import (
    Cluster,
    ClusterSpec,
    ControlSpec,
    Hpa,
    Metric,
    View,
    hpa_desired,
    on_time_share,
    simulate,
)
from tests.backtest.support import scenario

NO_COLD = ClusterSpec(cold_start_s=(0.0, 0.0))


def test_queue_and_late_follow_the_fifo_formulas() -> None:
    # c = 100, 2 ready replicas -> 200 served per minute.
    #   t  a    served-to-new         late  q
    #   0  150  200                   0     0
    #   1  250  200                   50    50
    #   2  180  200 - 50 = 150        30    30
    #   3  100  200 - 30 = 170        0     0
    #   4  500  200                   300   300
    #   5  0    0 (200 < 300 backlog) 0     100
    #   6  120  200 - 100 = 100       20    20
    sc = scenario([150, 250, 180, 100, 500, 0, 120])
    run = simulate(sc, Static(2), NO_COLD, ControlSpec(max_replicas=10))
    assert run.late.tolist() == [0, 50, 30, 0, 300, 0, 20]
    assert run.queue.tolist() == [0, 50, 30, 0, 300, 100, 20]
    assert run.attainment(sc.arrivals, slice(0, 7)) == pytest.approx(1 - 400 / 1300)


def test_billed_from_order_serving_after_cold_start() -> None:
    sc = scenario([0, 0, 0, 0, 0, 0])
    cluster = ClusterSpec(cold_start_s=(180.0, 180.0), gpus_per_replica=2)
    run = simulate(sc, Static(3), cluster, ControlSpec(max_replicas=10))
    assert run.billed.tolist() == [3] * 6
    assert run.ready.tolist() == [1, 1, 1, 3, 3, 3]  # minReplicas 1 was already up
    assert run.gpu_hours(2, slice(0, 6)) == pytest.approx(3 * 6 * 2 / 60)


def test_a_cold_start_part_of_a_minute_serves_from_the_next_one() -> None:
    run = simulate(scenario([0] * 4), Static(1), ClusterSpec(cold_start_s=(90.0, 90.0)),
                   ControlSpec(min_replicas=0))
    assert run.billed.tolist() == [1, 1, 1, 1]
    assert run.ready.tolist() == [0, 0, 1, 1]


def test_removal_is_immediate_and_takes_a_starting_replica_first() -> None:
    pool = Cluster(ClusterSpec(cold_start_s=(120.0, 120.0)))
    pool.scale_to(2, 0)
    assert pool.tick(0) == (0, 2)
    assert pool.tick(2) == (2, 2)
    pool.scale_to(4, 3)  # two more, ready at 5
    pool.scale_to(3, 4)  # one starting removed, both ready kept
    assert pool.tick(4) == (2, 3)
    assert pool.tick(5) == (3, 3)
    pool.scale_to(1, 6)
    assert pool.tick(6) == (1, 1)


def test_cold_start_range_draws_within_bounds_and_is_reproducible() -> None:
    spec = ClusterSpec(cold_start_s=(480.0, 840.0), seed=7)
    readies = []
    for _ in range(2):
        pool = Cluster(spec)
        pool.scale_to(50, 0)
        readies.append(sorted(r for r, _ in pool.pending))
    assert readies[0] == readies[1]
    assert min(readies[0]) >= 8 and max(readies[0]) <= 14 and len(set(readies[0])) > 3


@pytest.mark.parametrize(
    ("current", "value", "target", "tolerance", "desired"),
    [
        pytest.param(10, 9.0, 1.0, 0.1, 10, id="inside the 10% band: keep"),
        pytest.param(10, 10.95, 1.0, 0.1, 10, id="inside the band, above"),
        pytest.param(10, 11.0, 1.0, 0.1, 11, id="float edge: 11/10 - 1 > 0.1 in Kubernetes too"),
        pytest.param(10, 11.5, 1.0, 0.1, 12, id="outside the band"),
        pytest.param(10, 9.0, 1.0, 0.0, 9, id="tolerance 0"),
        pytest.param(4, 625.0, 100.0, 0.0, 7, id="ceil(6.25)"),
        pytest.param(0, 3.0, 1.0, 0.1, 3, id="no band at zero"),
        pytest.param(3, 6.000001, 2.0, 0.0, 3, id="float noise does not round up"),
    ],
)
def test_hpa_desired(current: int, value: float, target: float, tolerance: float, desired: int) -> None:
    assert hpa_desired(current, value, target, tolerance=tolerance) == desired


def test_hpa_scale_down_waits_for_the_window_scale_up_does_not() -> None:
    hpa = Hpa(ControlSpec(scale_down_window_s=300, min_replicas=1, max_replicas=8))
    wanted = [5, 2, 2, 2, 2, 2, 2, 9]
    applied, current = [], 1
    for minute, n in enumerate(wanted):
        current = hpa.apply(Metric(n, 1.0, True), current, minute * 60.0)
        applied.append(current)
    # 5 stays the highest of the last five minutes until minute 5; 9 clamps to max 8.
    assert applied == [5, 5, 5, 5, 5, 2, 2, 8]


def test_hpa_window_keeps_only_what_can_still_be_the_highest() -> None:
    """The window is pruned to recommendations higher than every later one; each answer must be
    the definition's: the highest recommendation of the last 300 s (clamped)."""
    rng = np.random.default_rng(7)
    hpa = Hpa(ControlSpec(scale_down_window_s=300, min_replicas=1, max_replicas=40))
    seen: list[tuple[float, int]] = []
    now, current = 0.0, 1
    for _ in range(2000):
        now += float(rng.choice([30.0, 60.0, 90.0, 300.0]))
        wanted = int(rng.integers(0, 30))
        seen.append((now, wanted))
        current = hpa.apply(Metric(float(wanted), 1.0, True), current, now)
        assert current == max(1, max(d for t, d in seen if t > now - 300.0))
        kept = [d for _, d in hpa.recent]
        assert all(a > b for a, b in pairwise(kept))  # falling: the first is the highest


def test_keda_scales_from_zero_only_when_active_and_to_zero_after_cooldown() -> None:
    hpa = Hpa(ControlSpec(min_replicas=0, cooldown_s=300, scale_down_window_s=0))
    assert hpa.apply(Metric(0, 1.0, False), 0, 0.0) == 0
    assert hpa.apply(Metric(7, 1.0, True), 0, 60.0) == 1  # KEDA: 0 -> max(min, 1)
    assert hpa.apply(Metric(7, 1.0, True), 1, 120.0) == 7
    assert hpa.apply(Metric(0, 1.0, False), 7, 180.0) == 1  # HPA floor is 1 while active lately
    assert hpa.apply(Metric(0, 1.0, False), 1, 420.0) == 0  # 300 s after the last active


def test_decisions_run_every_polling_interval() -> None:
    sc = scenario([100] * 6)
    run = simulate(sc, ReactiveUtil(100.0, 1.0), NO_COLD, ControlSpec(polling_s=120, scale_down_window_s=0))
    # Decisions at minutes 0, 2, 4 see a(t-1): 0 (nothing yet), 100, 100.
    assert run.replicas.tolist() == [1, 1, 1, 1, 1, 1]
    # 250 a minute on 1 replica: q(1) = 300, so minute 2 asks (250 + 300) / 100 -> 6; the backlog
    # is gone by minute 3, so minute 4 asks 250 / 100 -> 3.
    busy = simulate(scenario([250] * 6), ReactiveUtil(100.0, 1.0), NO_COLD,
                    ControlSpec(polling_s=120, scale_down_window_s=0))
    assert busy.replicas.tolist() == [1, 1, 6, 6, 3, 3]


def test_policies_see_only_the_past() -> None:
    seen: list[View] = []

    class Spy:
        def metric(self, view: View) -> Metric:
            seen.append(view)
            return Metric(1, 1.0, True)

    simulate(scenario([10, 20, 30], observed=[True, False, True]), Spy(), NO_COLD, ControlSpec())
    assert [(v.t, v.arrivals_prev, v.observed_prev) for v in seen] == [
        (0, 0.0, True), (1, 10.0, True), (2, 20.0, False)]


@pytest.mark.parametrize(
    ("queue", "threshold", "current", "desired"),
    [
        pytest.param(0.0, 5.0, 4, 1, id="nothing waits: down to min (after the window)"),
        pytest.param(12.0, 5.0, 1, 3, id="ceil(12 / 5)"),
        pytest.param(3.0, 5.0, 6, 6, id="at least current while anything waits"),
    ],
)
def test_reactive_queue(queue: float, threshold: float, current: int, desired: int) -> None:
    metric = ReactiveQueue(threshold).metric(View(5, 300.0, 0.0, queue, True, current))
    assert Hpa(ControlSpec(scale_down_window_s=0)).apply(metric, current, 300.0) == desired


def test_reactive_util_counts_backlog_as_load() -> None:
    # (450 + 50) / 100 = 5 replicas of load at u = 0.8 -> ceil(6.25) = 7.
    metric = ReactiveUtil(100.0, 0.8).metric(View(1, 60.0, 450.0, 50.0, True, 5))
    assert Hpa(ControlSpec()).apply(metric, 5, 60.0) == 7


class TestNodes:
    spec = ClusterSpec(cold_start_s=(120.0, 120.0), node_provision_s=180.0)

    def test_a_new_node_adds_provisioning(self) -> None:
        pool = Cluster(self.spec)
        pool.scale_to(1, 0)
        assert pool.pending == [(5, 3)]

    def test_a_freed_node_is_reused_while_idle(self) -> None:
        pool = Cluster(self.spec)
        pool.scale_to(1, 0)
        pool.tick(5)
        pool.scale_to(0, 6)
        pool.tick(6)
        pool.scale_to(1, 10)  # node idle since minute 6, kept 10 minutes
        assert pool.pending == [(12, 6)]
        pool.scale_to(0, 11)
        pool.tick(11)
        pool.tick(30)  # idle past 10 minutes: gone
        pool.scale_to(1, 30)
        assert pool.pending == [(35, 33)]

    def test_balloons_hold_nodes_and_are_billed(self) -> None:
        pool = Cluster(self.spec)
        pool.set_balloons(2, 0)
        assert pool.tick(0) == (0, 2)
        pool.scale_to(1, 4)  # balloon node ready since minute 3: no provisioning wait
        assert pool.pending == [(6, 3)]
        pool.set_balloons(1, 4)
        assert pool.tick(6) == (1, 2)


def test_on_time_share_of_a_window_with_the_requests_behind_it() -> None:
    arrivals, late = [10.0, 0.0, 30.0, 60.0], [0.0, 0.0, 3.0, 6.0]
    assert on_time_share(arrivals, late, stop=4, window=2) == (1.0 - 9.0 / 90.0, 90.0)
    assert on_time_share(arrivals, late, stop=4, window=99) == (1.0 - 9.0 / 100.0, 100.0)
    # No request arrived in the window: no share, 0 requests (an idle window, which the tuner
    # records). The window has not started: nothing read at all (missing data).
    assert on_time_share(arrivals, late, stop=2, window=1) == (None, 0.0)
    share, requests = on_time_share(arrivals, late, stop=0, window=5)
    assert share is None and math.isnan(requests)
