"""`prewarm explain` on a model with an SLO: the target, the measurement, the margin and the aim."""

from __future__ import annotations

import math

from scaler.core.slo import Margin
from scaler.explain import explain, render
from tests.unit.test_metrics_export import T0, snapshot


def test_explain_shows_the_slo_the_margin_and_the_share_the_tuner_aimed_at() -> None:
    page = explain(snapshot(), "chat", now=T0)
    assert page is not None
    assert page["slo"] == {"on_time_target": 0.99, "max_queue_seconds": 1.0, "measured_on_time": 0.95,
                           "margin": 1.3, "base_demand": None, "aim": 0.995, "shape": None, "budget": None}
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert "99% of requests queued <= 1s; measured 95.00%; margin x1.3" in line
    assert line.endswith("chosen to reach 99.50% on the replayed two weeks (re-chosen daily)")
    page["slo"]["aim"] = 0.9995
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert line.endswith("chosen to reach 99.95% on the replayed two weeks (week's error budget spent: re-chosen hourly)")


def test_explain_says_why_a_spent_week_stays_on_the_daily_choice() -> None:
    """A week spent by a lone outlier burst is chosen for at the calm aim, daily: the tuner's
    reading of the budget, carried in the snapshot, says why (the aim alone cannot)."""
    page = explain(snapshot(budgets={"chat": "one-off"}), "chat", now=T0)
    assert page is not None and page["slo"]["budget"] == "one-off"
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert line.endswith("chosen to reach 99.50% on the replayed two weeks (a lone outlier burst spent the "
                         "week's budget, the rest of the week did not: re-chosen daily)")
    page = explain(snapshot(budgets={"chat": "calm"}), "chat", now=T0)
    assert page is not None
    assert next(x for x in render(page).splitlines() if x.startswith("  SLO")).endswith("(re-chosen daily)")


def test_explain_without_a_tuned_margin_says_nothing_of_an_aim() -> None:
    page = explain(snapshot(), "chat", now=T0)
    assert page is not None
    page["slo"]["aim"] = None
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert "chosen to reach" not in line


def test_explain_shows_the_margin_term_by_term() -> None:
    """The margin as one number (x3.4 on an idle model) hides what holds the replicas: the
    shape says it, in replicas where a term adds replicas."""
    capacity = 10.0  # the chat model's capacityPerReplica in the shared snapshot
    standby = Margin(1.2, extra=100.0, spread=0.5, cap=math.inf, hold_seconds=360.0)
    page = explain(snapshot(margins={"chat": standby}), "chat", now=T0)
    assert page is not None
    assert page["slo"]["shape"] == {"factor": 1.2, "applied_to": "expected demand",
                                    "standby_replicas": 100.0 / capacity, "spread": 0.5,
                                    "cap_replicas": None, "floor_factor": 1.2, "hold_seconds": 360.0}
    line = next(x for x in render(page).splitlines() if x.startswith("  margin"))
    assert line == "  margin         1.2 x expected demand + 10 replicas standby + 0.5 x excursion, no cap, held 6m"
    static = Margin(1.0, extra=190.0, cap=190.0, forecast=False, hold_seconds=720.0)
    page = explain(snapshot(margins={"chat": static}), "chat", now=T0)
    assert page is not None
    line = next(x for x in render(page).splitlines() if x.startswith("  margin"))
    assert line == "  margin         1 x demand now + 19 replicas standby, capped at 19 replicas, held 12m"
    # Above a cap the count follows the expected demand with the factor's room, at most 1.2x: said.
    capped = Margin(3.0, cap=120.0, hold_seconds=360.0)
    page = explain(snapshot(margins={"chat": capped}), "chat", now=T0)
    assert page is not None and page["slo"]["shape"]["floor_factor"] == 1.2
    line = next(x for x in render(page).splitlines() if x.startswith("  margin"))
    assert line == ("  margin         3 x expected demand, capped at 12 replicas (1.2 x expected demand above it), "
                    "held 6m")
