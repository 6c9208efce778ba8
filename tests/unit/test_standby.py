"""Balloon sizing per node pool and extra standby when the forecast is unsure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.core.config import ModelSettings, NodePool, Target
from scaler.core.model import Decision, Reason
from scaler.core.standby import (
    BalloonPlan,
    NodeGpus,
    PoolCapacity,
    balloon_gpus,
    has_spare,
    pool_capacity,
)


def pool(*, per_replica: int = 1, cap: int = 16, name: str = "h100") -> NodePool:
    return NodePool(name=name, gpusPerNode=8, gpusPerReplica=per_replica, maxBalloonGpus=cap)


def model(name: str, node_pool: str | None = "h100") -> ModelSettings:
    return ModelSettings(name=name, capacityPerReplica=16.0, nodePool=node_pool,
                         target=Target(namespace="llm", deployment=f"vllm-{name}"))


MODELS = (model("a"), model("b"), model("other", node_pool="a100"), model("nopool", node_pool=None))


def decisions(**prewarm: int) -> dict[str, Decision]:
    return {name: Decision(model=name, at=0.0, replicas=1, reason=Reason.FORECAST, valid=True,
                           active=True, prewarm_replicas=n) for name, n in prewarm.items()}


@pytest.mark.parametrize(("nodes", "per_replica", "pending", "expected"), [
    pytest.param([NodeGpus(8, used=7)], 1, 0, PoolCapacity(8, 1, 0, 1), id="one-free-gpu"),
    pytest.param([NodeGpus(8, used=6, balloon=2)], 1, 0, PoolCapacity(8, 0, 2, 2), id="balloons-are-spare-not-free"),
    pytest.param([NodeGpus(8, used=7), NodeGpus(8, used=7)], 2, 0, PoolCapacity(16, 0, 0, 0),
                 id="two-lone-gpus-hold-no-2-gpu-replica"),
    pytest.param([NodeGpus(8, used=5, balloon=1)], 2, 0, PoolCapacity(8, 2, 1, 2), id="slots-per-replica-shape"),
    pytest.param([NodeGpus(8, used=6)], 1, 1, PoolCapacity(8, 1, 0, 1), id="pending-pod-takes-a-slot-first"),
    pytest.param([NodeGpus(8, used=9)], 1, 0, PoolCapacity(8, 0, 0, 0), id="overcommitted-never-negative"),
    pytest.param([], 1, 3, PoolCapacity(0, 0, 0, 0), id="no-nodes"),
])
def test_pool_capacity(nodes: list[NodeGpus], per_replica: int, pending: int, expected: PoolCapacity) -> None:
    assert pool_capacity(nodes, gpus_per_replica=per_replica, pending_gpus=pending) == expected


@pytest.mark.parametrize(("capacity", "per_replica", "expected"), [
    pytest.param(None, 1, None, id="unknown"),
    pytest.param(PoolCapacity(8, 0, 1, 1), 1, True, id="a-balloon-gpu-is-spare"),
    pytest.param(PoolCapacity(8, 0, 1, 1), 2, False, id="not-enough-for-a-2-gpu-replica"),
    pytest.param(PoolCapacity(8, 0, 0, 0), 1, False, id="full"),
])
def test_has_spare(capacity: PoolCapacity | None, per_replica: int, expected: bool | None) -> None:
    assert has_spare(capacity, per_replica) is expected


@pytest.mark.parametrize(("the_pool", "given", "free", "expected"), [
    pytest.param(pool(), decisions(a=3, b=2), 1, BalloonPlan("h100", 5, 1, 4, 1, False),
                 id="docstring-example-5-wanted-1-free"),
    pytest.param(pool(), decisions(a=0, b=0), 4, BalloonPlan("h100", 0, 4, 0, 1, False), id="nothing-wanted"),
    pytest.param(pool(), decisions(a=2), 6, BalloonPlan("h100", 2, 6, 0, 1, False), id="free-gpus-cover-it"),
    pytest.param(pool(cap=3), decisions(a=5, b=2), 0, BalloonPlan("h100", 7, 0, 3, 1, True),
                 id="cap-is-a-ceiling"),
    pytest.param(pool(per_replica=2, cap=5), decisions(a=2, b=1), 1, BalloonPlan("h100", 6, 1, 2, 2, True),
                 id="cap-in-whole-balloon-pods"),
    pytest.param(pool(per_replica=2), decisions(a=2), 1, BalloonPlan("h100", 4, 1, 2, 2, False),
                 id="rounded-up-to-replica-shape"),
    pytest.param(pool(), decisions(a=2, other=9, nopool=9), 0, BalloonPlan("h100", 2, 0, 2, 1, False),
                 id="only-the-pools-models"),
    pytest.param(pool(), decisions(a=2), 0, BalloonPlan("h100", 2, 0, 2, 1, False, hold=True),
                 id="a-missing-decision-holds"),
    pytest.param(pool(cap=0), decisions(a=4, b=1), 0, BalloonPlan("h100", 5, 0, 0, 1, True),
                 id="pre-warming-off"),
])
def test_balloon_gpus(the_pool: NodePool, given: dict[str, Decision], free: int, expected: BalloonPlan) -> None:
    models = MODELS if "b" in given or expected.hold else tuple(m for m in MODELS if m.name != "b")
    capacity = PoolCapacity(allocatable_gpus=16, free_gpus=free, spare_gpus=free)
    assert balloon_gpus(the_pool, models, given, capacity=capacity) == expected


def test_invalid_decision_holds_and_is_not_counted() -> None:
    given = decisions(a=2, b=5)
    given["b"] = Decision(model="b", at=0.0, replicas=0, reason=Reason.NO_DATA, valid=False, active=False,
                          prewarm_replicas=5)
    plan = balloon_gpus(pool(), MODELS, given, capacity=None)
    assert (plan.pods, plan.hold) == (2, True)


prewarm = st.integers(min_value=0, max_value=50)
free_gpus = st.integers(min_value=0, max_value=64)
pools = st.builds(lambda per, cap: pool(per_replica=per, cap=cap), st.integers(1, 8), st.integers(0, 64))


@given(pools, prewarm, prewarm, free_gpus)
def test_balloon_bounds_and_coverage(the_pool: NodePool, a: int, b: int, free: int) -> None:
    plan = balloon_gpus(the_pool, MODELS, decisions(a=a, b=b),
                        capacity=PoolCapacity(free_gpus=free, spare_gpus=free))
    assert 0 <= plan.gpus <= the_pool.maxBalloonGpus
    assert plan.gpus % the_pool.gpusPerReplica == 0
    if not plan.capped:
        assert plan.gpus + free >= plan.wanted_gpus  # the headroom is there, balloon or free
        assert plan.gpus < max(1, plan.wanted_gpus - free) + the_pool.gpusPerReplica  # and no more


@given(pools, prewarm, prewarm, free_gpus)
def test_more_forecast_never_fewer_balloons(the_pool: NodePool, a: int, extra: int, free: int) -> None:
    capacity = PoolCapacity(free_gpus=free, spare_gpus=free)
    low = balloon_gpus(the_pool, MODELS, decisions(a=a, b=0), capacity=capacity)
    high = balloon_gpus(the_pool, MODELS, decisions(a=a + extra, b=0), capacity=capacity)
    assert high.pods >= low.pods


@given(pools, prewarm, free_gpus, free_gpus)
def test_more_free_gpus_never_more_balloons(the_pool: NodePool, a: int, free: int, extra: int) -> None:
    few = balloon_gpus(the_pool, MODELS, decisions(a=a, b=0), capacity=PoolCapacity(free_gpus=free))
    many = balloon_gpus(the_pool, MODELS, decisions(a=a, b=0), capacity=PoolCapacity(free_gpus=free + extra))
    assert many.pods <= few.pods


@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8)), max_size=6),
       st.integers(1, 4), st.integers(0, 16))
def test_capacity_invariants(rows: list[tuple[int, int, int]], per_replica: int, pending: int) -> None:
    nodes = [NodeGpus(allocatable=a, used=u, balloon=b) for a, u, b in rows]
    cap = pool_capacity(nodes, gpus_per_replica=per_replica, pending_gpus=pending)
    assert 0 <= cap.free_gpus <= cap.spare_gpus
    assert cap.free_gpus % per_replica == 0 or pending % per_replica != 0
    assert cap.spare_gpus <= max(0, cap.allocatable_gpus)
