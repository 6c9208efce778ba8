"""``trailing_gaps``: collection gaps judged from the past only, so a replay cannot look ahead."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.cleaning import GapPolicy, mask_collection_gaps, trailing_gaps
from forecasting.traces import read_trace

# Where the past alone settles it, the verdict is the offline rule's (counts in brackets).
CASES: dict[str, Sequence[float]] = {
    "gap amid traffic (3)": [80, 90, 85] * 20 + [0] * 3 + [85] * 10,
    "partial buckets at the edges (3)": [2e5] * 40 + [1e3, 0, 2e3] + [2e5] * 5,
    "gap at the end (2)": [70, 75] * 12 + [0, 0],
    "sparse low traffic (0)": [2, 0, 1, 0, 3] * 6,
    "zeros before any traffic (0)": [0] * 3 + [60, 70] * 15,
    "real dip (0)": [1e4] * 30 + [5e3] * 3 + [1e4] * 5,
    "on/off client (0)": [0, 0, 400, 0, 0, 0, 600] * 8,
    "missing row then zeros (2)": [50.0] * 30 + [np.nan, 0, 0] + [50.0] * 5,
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_verdicts_as_the_offline_rule(case: str) -> None:
    x = np.array(CASES[case], float)
    found = trailing_gaps(x, step_seconds=600, policy=GapPolicy())
    assert int(found.sum()) == int(case[-2])
    offline = np.isnan(mask_collection_gaps(x, step_seconds=600, policy=GapPolicy()).values)
    np.testing.assert_array_equal(found, offline & ~np.isnan(x))


def test_a_long_zero_run_is_a_gap_for_max_run_then_believed() -> None:
    # Offline the whole run is believed (it is too long); at the time, nobody could know that
    # for its first hour, exactly as ``update`` treats zeros online.
    values = np.array([50.0] * 400 + [0.0] * 40 + [50.0] * 6)
    found = trailing_gaps(values, step_seconds=600, policy=GapPolicy(max_run_seconds=3600))
    assert np.flatnonzero(found).tolist() == list(range(400, 406))


def test_a_run_ends_being_a_gap_at_its_first_sample_too_big_for_one() -> None:
    # 15 is low against the week's level (1000) but too much for a gap amid traffic of 300:
    # from there on the run is believed, even the zero after it.
    values = np.array([1000.0] * 50 + [300.0] * 6 + [0.0, 15.0, 0.0] + [300.0] * 5)
    found = trailing_gaps(values, step_seconds=600, policy=GapPolicy())
    assert np.flatnonzero(found).tolist() == [56]


@settings(max_examples=60, deadline=None)
@given(
    past=st.lists(st.one_of(st.just(0.0), st.floats(0, 2000)), min_size=1, max_size=200),
    future=st.lists(st.one_of(st.just(0.0), st.just(np.nan), st.floats(0, 1e6)), max_size=60),
)
def test_no_verdict_depends_on_a_later_sample(past: list[float], future: list[float]) -> None:
    x = np.array(past + [0.0] * 5)  # end on a run of zeros, the case the future could decide
    longer = np.concatenate([x, np.array(future, float)])
    for step in (60, 600):
        alone = trailing_gaps(x, step_seconds=step, policy=GapPolicy())
        within = trailing_gaps(longer, step_seconds=step, policy=GapPolicy())
        np.testing.assert_array_equal(alone, within[: x.shape[0]])


@pytest.mark.parametrize(("trace", "zeros"), [("m-small", 37), ("m-mid", 84)])
def test_finds_servegen_zero_buckets(servegen: Path, trace: str, zeros: int) -> None:
    values = read_trace(servegen / f"{trace}_10min.csv").series.values
    found = trailing_gaps(values, step_seconds=600, policy=GapPolicy())
    assert int(np.sum(values == 0)) == zeros
    assert bool(np.all(found[values == 0]))
    offline = np.isnan(mask_collection_gaps(values, step_seconds=600, policy=GapPolicy()).values)
    np.testing.assert_array_equal(found, offline)  # partial buckets at the edges too (m-mid 18)
