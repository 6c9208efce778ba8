"""Pareto frontier and ``cost_at_slo`` (docs/BACKTEST.md, "Headline figures").

A sweep gives (GPU-hours, SLO attainment) points. The frontier keeps the points no other point
beats on both (cheaper-or-equal and better-or-equal, one strictly), sorted by GPU-hours (so also
by attainment). ``cost_at_slo(x)`` is the GPU-hours of the first frontier point reaching ``x``,
linearly interpolated from the frontier point before it. E.g. frontier (10 h, 0.95), (20 h, 0.999):
cost_at_slo(0.99) = 10 + (0.99 - 0.95) / (0.999 - 0.95) x 10 = 18.16 h.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One sweep point of one policy."""

    knob: float
    """The policy's knob value (u, threshold, replicas or quantile)."""
    slo_attainment: float
    gpu_hours: float
    label: str = ""
    """Human-readable knob, e.g. ``u=0.7`` or ``q0.95 x1.2``."""
    headroom: float = 1.0
    """Predictive only: capacityPerReplica = c / headroom."""


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as cheap and as good as ``b``, and strictly better in one."""
    return (a.gpu_hours <= b.gpu_hours and a.slo_attainment >= b.slo_attainment
            and (a.gpu_hours < b.gpu_hours or a.slo_attainment > b.slo_attainment))


def pareto_frontier(points: Sequence[Point]) -> list[Point]:
    """Non-dominated points (duplicates kept once), by GPU-hours then attainment."""
    kept: list[Point] = []
    for p in sorted(points, key=lambda p: (p.gpu_hours, -p.slo_attainment)):
        if any(dominates(k, p) for k in kept):
            continue
        if any(k.gpu_hours == p.gpu_hours and k.slo_attainment == p.slo_attainment for k in kept):
            continue
        kept.append(p)
    return kept


def cost_at_slo(points: Sequence[Point], slo: float) -> float | None:
    """GPU-hours to reach attainment ``slo`` on the frontier (interpolated); None if never."""
    frontier = pareto_frontier(points)
    for i, p in enumerate(frontier):
        if p.slo_attainment < slo:
            continue
        if i == 0:
            return p.gpu_hours
        prev = frontier[i - 1]
        share = (slo - prev.slo_attainment) / (p.slo_attainment - prev.slo_attainment)
        return prev.gpu_hours + share * (p.gpu_hours - prev.gpu_hours)
    return None


def reaching(points: Sequence[Point], slo: float) -> Point | None:
    """The first frontier point with attainment >= ``slo`` (the one ``cost_at_slo`` lands on)."""
    return next((p for p in pareto_frontier(points) if p.slo_attainment >= slo), None)
