"""The stand-in exporter's clock: a session reads each trace ahead so that its live tests never
fall in one of the trace's collection gaps, whatever the time of day it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.vllm_exporter import Trace, live_shift, load_trace

HOUR = 3600


@pytest.mark.parametrize("name", ["m-small", "m-mid"])
def test_a_session_starting_at_any_time_sees_no_gap(shared_data: Path, name: str) -> None:
    trace = load_trace(str(shared_data / "servegen" / f"{name}_10min.csv"), mean_concurrency=10.0)
    assert sum(v == 0 for v in trace.values) > 30  # the traces do have gaps to avoid
    whole_days = 0
    for start in range(0, trace.span, HOUR // 2):  # every half hour of the two-week cycle
        shift = live_shift(trace, start=start - HOUR, end=start + 4 * HOUR)
        shifted = Trace(trace.values, trace.step, shift=shift)
        assert not any(shifted.is_gap(t) for t in range(start - HOUR, start + 4 * HOUR + 1, 60)), start
        whole_days += shift % 86400 == 0
    assert whole_days > 0.9 * (trace.span // (HOUR // 2))  # the daily phase mostly kept


def test_a_shifted_trace_serves_and_counts_the_same_buckets() -> None:
    trace = Trace((1.0, 0.0, 3.0, 5.0), step=600, shift=1200.0)
    assert [trace.at(t) for t in (0, 600, 1200, 1800)] == [3.0, 5.0, 1.0, 0.0]
    # Served over [0, 1200): the buckets read there, 3 and 5, for 600 s each.
    assert trace.integral(1200) - trace.integral(0) == pytest.approx(600 * (3.0 + 5.0))
    assert live_shift(Trace((0.0, 0.0)), start=0, end=600) == 0.0  # nothing to find: unshifted
