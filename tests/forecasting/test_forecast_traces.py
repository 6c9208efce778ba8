"""Trace CSV reader: step detection, gzip, missing buckets, clear errors naming the row."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from forecasting.traces import TraceError, read_trace, synthetic_trace, write_trace

HEADER = "timestamp_utc,requests,prompt_tokens,output_tokens\n"


def _write(tmp_path: Path, body: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    data = (HEADER + body).encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_reads_step_values_and_empty_token_cells(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, "1970-01-01T00:00:00Z,5,,\n1970-01-01T00:10:00Z,7,10,\n", name)
    trace = read_trace(path)
    assert trace.step_seconds == 600 and trace.series.start == 0.0
    np.testing.assert_array_equal(trace.series.values, [5, 7])
    assert np.isnan(trace.columns["output_tokens"].values).all()


def test_missing_buckets_become_nan(tmp_path: Path) -> None:
    body = "1970-01-01T00:00:00Z,1,,\n1970-01-01T00:01:00Z,2,,\n1970-01-01T00:04:00Z,3,,\n"
    trace = read_trace(_write(tmp_path, body))
    assert trace.step_seconds == 60 and trace.missing_rows == 2
    np.testing.assert_array_equal(trace.series.values, [1, 2, np.nan, np.nan, 3])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        pytest.param("1970-01-01T00:00:00Z,1,,\n1970-01-01T00:10:00Z,1,,\n"
                     "1970-01-01T00:25:00Z,1,,\n", "row 4: irregular", id="irregular"),
        pytest.param("1970-01-01T00:10:00Z,1,,\n1970-01-01T00:00:00Z,1,,\n",
                     "row 3: timestamp does not increase", id="backwards"),
        pytest.param("yesterday,1,,\n", "row 2: bad timestamp", id="bad-timestamp"),
        pytest.param("1970-01-01T00:00:00Z,many,,\n", "row 2, column 2 \\(requests\\): not a number",
                     id="bad-number"),
        pytest.param("", "no data rows", id="empty"),
    ],
)
def test_errors_name_the_row(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(TraceError, match=match):
        read_trace(_write(tmp_path, body))


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "absent.csv")


def test_synthetic_round_trips_and_is_deterministic(tmp_path: Path) -> None:
    trace = synthetic_trace(days=2, step_seconds=600, seed=3)
    again = synthetic_trace(days=2, step_seconds=600, seed=3)
    np.testing.assert_array_equal(trace.series.values, again.series.values)
    write_trace(tmp_path / "s.csv.gz", trace)
    back = read_trace(tmp_path / "s.csv.gz")
    np.testing.assert_array_equal(back.series.values, trace.series.values)
    assert back.step_seconds == 600 and len(back.series) == 288


def test_synthetic_has_a_daily_cycle_and_quiet_weekends() -> None:
    values = synthetic_trace(days=14, step_seconds=3600).series.values.reshape(14, 24)
    assert values[:, 19].mean() > 2 * values[:, 3].mean()  # evening peak vs night
    assert values[5:7].sum() < 0.75 * values[0:2].sum()  # weekend
