"""Pareto frontier and cost_at_slo interpolation (EVALUATION.md, headline figures)."""

from __future__ import annotations

import pytest

from scaler.backtest.pareto import Point, cost_at_slo, pareto_frontier, reaching


def pts(*pairs: tuple[float, float]) -> list[Point]:
    return [Point(knob=i, slo_attainment=s, gpu_hours=g) for i, (g, s) in enumerate(pairs)]


def test_frontier_drops_dominated_and_duplicate_points() -> None:
    points = pts((10, 0.95), (12, 0.94), (20, 0.999), (20, 0.999), (25, 0.999), (8, 0.90))
    assert [(p.gpu_hours, p.slo_attainment) for p in pareto_frontier(points)] == [
        (8, 0.90), (10, 0.95), (20, 0.999)]


@pytest.mark.parametrize(
    ("pairs", "slo", "cost"),
    [
        pytest.param([(10, 0.95), (20, 0.999)], 0.99, 10 + (0.99 - 0.95) / (0.999 - 0.95) * 10,
                     id="interpolated from the point before"),
        pytest.param([(10, 0.995), (20, 0.999)], 0.99, 10, id="cheapest point already reaches it"),
        pytest.param([(10, 0.95), (20, 0.99)], 0.99, 20, id="exactly reached"),
        pytest.param([(10, 0.95), (20, 0.98)], 0.99, None, id="never reached: null"),
        pytest.param([(10, 0.95), (15, 0.93), (20, 0.999)], 0.99,
                     10 + (0.99 - 0.95) / (0.999 - 0.95) * 10, id="dominated point ignored"),
        pytest.param([(5, 0.5), (10, 0.95), (20, 0.999), (40, 1.0)], 0.999, 20, id="0.999"),
    ],
)
def test_cost_at_slo(pairs: list[tuple[float, float]], slo: float, cost: float | None) -> None:
    result = cost_at_slo(pts(*pairs), slo)
    assert result == (pytest.approx(cost) if cost is not None else None)


def test_reaching_names_the_point_cost_at_slo_lands_on() -> None:
    points = pts((10, 0.95), (20, 0.999))
    assert reaching(points, 0.99) == points[1]
    assert reaching(points, 0.9999) is None
