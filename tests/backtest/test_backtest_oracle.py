"""The oracle: its closed form, and optimality against brute force on small cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.backtest.oracle import oracle_billed, oracle_cold_minutes, oracle_need
from scaler.backtest.sim import Cluster, ClusterSpec


@pytest.mark.parametrize(
    ("need", "cold", "billed"),
    [
        pytest.param([1, 1, 3, 1, 1, 1], 2, [3, 3, 3, 1, 1, 1], id="docstring: ordered at 0 for 2"),
        pytest.param([2, 0, 0, 2], 2, [2, 2, 2, 2], id="gap of 2 <= C: kept (or restart, same cost)"),
        pytest.param([2, 0, 0, 0, 2], 2, [2, 0, 2, 2, 2], id="gap of 3 > C: stop, restart C early"),
        pytest.param([0, 0, 0, 1], 0, [0, 0, 0, 1], id="no cold start: need itself"),
        pytest.param([3, 2, 1], 5, [3, 2, 1], id="window runs past the end"),
    ],
)
def test_billed_is_max_need_over_the_cold_start(need: list[int], cold: int, billed: list[int]) -> None:
    demand = np.asarray(need, dtype=np.float64)
    assert oracle_billed(demand, cold_start_minutes=cold, min_replicas=0).tolist() == billed


def test_need_is_ceil_of_demand_with_min_and_float_tolerance() -> None:
    demand = np.array([0.0, 0.2, 1.0, 1.0000001, 2.5])
    assert oracle_need(demand, min_replicas=1).tolist() == [1, 1, 1, 1, 3]


def test_lead_is_the_shortest_cold_start_plus_node_provisioning() -> None:
    assert oracle_cold_minutes((480.0, 840.0), 90.0) == 10  # 8 m + 1.5 m -> 10 whole minutes


def brute_force(need: list[int], cold: int, top: int) -> int | None:
    """Cheapest billed replica-minutes over every sequence of Deployment sizes with zero late.

    Replays each sequence through the simulator's own cluster (ordered at t, serving from
    t + cold, starting replicas removed first), so the oracle is checked against what the
    cluster model allows, not against its own reasoning.
    """
    best: int | None = None
    for sizes in itertools.product(range(top + 1), repeat=len(need)):
        pool, cost, ok = Cluster(ClusterSpec(cold_start_s=(cold * 60.0, cold * 60.0))), 0, True
        for t, size in enumerate(sizes):
            pool.scale_to(size, t)
            ready, billed = pool.tick(t)
            if ready < need[t]:
                ok = False
                break
            cost += billed
        if ok and (best is None or cost < best):
            best = cost
    return best


@settings(max_examples=25, deadline=None)
@given(cold=st.integers(0, 2), tail=st.lists(st.integers(0, 2), min_size=3, max_size=5))
def test_oracle_is_optimal_against_brute_force(cold: int, tail: list[int]) -> None:
    # Nothing is needed during the first cold start (the brute force cannot order before minute 0).
    need = [0] * cold + tail
    demand = np.asarray(need, dtype=np.float64)
    oracle = int(oracle_billed(demand, cold_start_minutes=cold, min_replicas=0).sum())
    assert oracle == brute_force(need, cold, top=max(need))
