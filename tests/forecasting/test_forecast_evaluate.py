"""The evaluation arithmetic, on numbers small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.eval_cli import UsageError, parse_duration
from forecasting.evaluate import EvalSpec, ModelRun, metrics, origins


def _run(mean: list[float], q90: list[float]) -> ModelRun:
    return ModelRun("m", np.array(mean), {0.9: np.array(q90)}, [0.1, 0.3, 0.2])


def test_metrics_by_hand() -> None:
    y = np.array([10.0, 20.0, np.nan, 40.0])  # the NaN (a gap) is not scored
    model = _run([12.0, 18.0, 0.0, 40.0], [15.0, 19.0, 0.0, 50.0])
    baseline = _run([14.0, 24.0, 0.0, 36.0], [0.0] * 4)
    m = metrics(model, y, baseline)
    assert m["mase"] == pytest.approx((2 + 2 + 0) / (4 + 4 + 4))
    assert m["smape"] == pytest.approx(100 * np.mean([4 / 22, 4 / 38, 0.0]))
    assert m["coverage"]["0.9"] == pytest.approx(2 / 3)  # 10 <= 15, 20 > 19, 40 <= 50
    # pinball(0.9): y - q = -5 -> 0.5, +1 -> 0.9, -10 -> 1.0
    assert m["pinball"]["0.9"] == pytest.approx((0.5 + 0.9 + 1.0) / 3)
    assert m["fit_seconds_median"] == pytest.approx(0.2)
    assert m["scored_points"] == 3


def test_origins_cover_the_last_quarter() -> None:
    span = origins(100, EvalSpec(horizon_steps=3))
    assert span.start == 75 and span.stop == 98  # the last origin still has its horizon step


@pytest.mark.parametrize(("cap", "start"), [(None, 7500), (10_000, 7500), (2500, 7500), (1000, 9000)])
def test_a_long_trace_scores_at_most_the_span_given(cap: int | None, start: int) -> None:
    """The last quarter, or the last ``max_eval_steps`` when that is shorter: the cost of the
    evaluation stops growing with the trace."""
    span = origins(10_000, EvalSpec(horizon_steps=3, max_eval_steps=cap))
    assert span.start == start and span.stop == 9998


@pytest.mark.parametrize(("most", "every", "count"), [(None, 1, 2498), (2498, 1, 2498), (2497, 2, 1249),
                                                      (1000, 3, 833), (1, 2498, 1)])
def test_too_many_origins_are_scored_every_kth_step_ending_at_the_last(most: int | None, every: int,
                                                                       count: int) -> None:
    span = origins(10_000, EvalSpec(horizon_steps=3, max_origins=most))
    assert span.step == every and len(span) == count and len(span) <= (most or count)
    assert span[-1] == 9997 and span[0] >= 7500  # the newest origin, within the last quarter


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h", 3600), ("1d", 86400),
                                               ("90s", 90), ("1.5h", 5400), ("1w", 604800)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text, flag="--horizon") == seconds


@pytest.mark.parametrize("text", ["weekly", "90", "-1d"])
def test_parse_duration_names_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match=f"--season '{text}' is not a duration"):
        parse_duration(text, flag="--season")


@pytest.mark.parametrize("kwargs", [{"horizon_steps": 0}, {"horizon_steps": 1, "quantiles": ()},
                                    {"horizon_steps": 1, "eval_fraction": 1.0},
                                    {"horizon_steps": 1, "refit_every_steps": 0},
                                    {"horizon_steps": 3, "max_eval_steps": 2},
                                    {"horizon_steps": 1, "max_origins": 0}])
def test_eval_spec_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EvalSpec(**kwargs)  # type: ignore[arg-type]
