import numpy as np
import pytest

from forecasting.types import Series
from scaler.history import History

T0 = 1_767_225_600.0


def test_live_samples_average_into_buckets_and_only_completed_show() -> None:
    h = History(step_seconds=60, span_seconds=3600)
    for t, v in [(T0, 2.0), (T0 + 30, 4.0), (T0 + 60, 10.0)]:
        h.add(t, v)
    s = h.completed(T0 + 90)
    assert s is not None and s.start == T0 and list(s.values) == [3.0]  # the minute at T0+60 is not complete
    assert list(h.completed(T0 + 120).values) == [3.0, 10.0]


def test_gaps_are_nan_and_bad_samples_ignored() -> None:
    h = History(step_seconds=60, span_seconds=3600)
    h.add(T0, 1.0)
    h.add(T0 + 30, float("nan"))
    h.add(T0 + 30, float("inf"))
    h.add(T0 + 180, 5.0)
    values = h.completed(T0 + 240).values
    assert values[0] == 1.0 and np.isnan(values[1]) and np.isnan(values[2]) and values[3] == 5.0


def test_backfill_resamples_and_trims_to_span() -> None:
    h = History(step_seconds=600, span_seconds=3 * 600)
    h.backfill(Series(start=T0, step_seconds=60, values=np.arange(60, dtype=float)))
    s = h.completed(T0 + 3600)
    assert s.step_seconds == 600 and len(s) == 3 and s.start == T0 + 1800
    assert list(s.values) == [34.5, 44.5, 54.5]


def test_coarse_backfill_repeats_and_incompatible_steps_fail() -> None:
    h = History(step_seconds=60, span_seconds=86400)
    h.backfill(Series(start=T0, step_seconds=300, values=np.array([1.0, 2.0])))
    assert list(h.completed(T0 + 600).values) == [1.0] * 5 + [2.0] * 5
    with pytest.raises(ValueError, match="steps must divide"):
        History(step_seconds=60, span_seconds=600).backfill(Series(start=T0, step_seconds=90, values=np.ones(3)))
