"""`prewarm explain` on a model with an SLO: the target, the measurement, the margin and the aim."""

from __future__ import annotations

from scaler.explain import explain, render
from tests.unit.test_metrics_export import T0, snapshot


def test_explain_shows_the_slo_the_margin_and_the_share_the_tuner_aimed_at() -> None:
    page = explain(snapshot(), "chat", now=T0)
    assert page is not None
    assert page["slo"] == {"on_time_target": 0.99, "max_queue_seconds": 1.0, "measured_on_time": 0.95,
                           "margin": 1.3, "base_demand": None, "aim": 0.995}
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert "99% of requests queued <= 1s; measured 95.00%; margin x1.3" in line
    assert line.endswith("chosen to reach 99.50% on the replayed two weeks (re-chosen daily)")
    page["slo"]["aim"] = 0.9995
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert line.endswith("chosen to reach 99.95% on the replayed two weeks (week's error budget spent: re-chosen hourly)")


def test_explain_without_a_tuned_margin_says_nothing_of_an_aim() -> None:
    page = explain(snapshot(), "chat", now=T0)
    assert page is not None
    page["slo"]["aim"] = None
    line = next(x for x in render(page).splitlines() if x.startswith("  SLO"))
    assert "chosen to reach" not in line
