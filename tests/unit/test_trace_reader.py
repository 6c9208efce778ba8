"""The one trace reader on small hostile files: each is refused naming the file and the row,
and every format it reads (gzip, BOM, quotes, CRLF, short rows, extra columns) still reads.

The 200 MB time and memory bound is measured by benchmarks/trace_limits.py, not here.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from forecasting import traces
from forecasting.traces import MAX_CELL_CHARS, MAX_LINE_BYTES, TraceError, read_trace

HEADER = b"timestamp_utc,requests,prompt_tokens,output_tokens\n"
ROW = b"1970-01-01T00:00:00Z,5,,\n"


def _file(tmp_path: Path, data: bytes, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,\xff\xfe5,,\n",
                     r"row 3: not UTF-8 text \(byte 0xff", id="latin1-byte"),
        pytest.param("timestamp_utc,requests\n".encode("utf-16"), "row 1: not UTF-8 text",
                     id="utf16-file"),
        pytest.param(HEADER + b"1" * (MAX_LINE_BYTES + 10), "row 2: line longer than 64 KiB",
                     id="one-giant-line"),
        pytest.param(b"x" * (3 * MAX_LINE_BYTES), "row 1: line longer than 64 KiB",
                     id="giant-header"),
        pytest.param(HEADER + b"1970-01-01T00:00:00Z," + b"7" * (MAX_CELL_CHARS + 1) + b",,\n",
                     "row 2, column 2 \\(requests\\): cell longer than 128", id="long-cell"),
        pytest.param(HEADER + b"1970-01-01T00:00:00Z," + b"x" * (MAX_CELL_CHARS + 1) + b",,\n",
                     "row 2, column 2 \\(requests\\): cell longer than 128", id="long-text-cell"),
        pytest.param(HEADER + b" " * 200 + b"1970-01-01T00:00:00Z,5,,\n",
                     "row 2: bad timestamp: longer than 128", id="long-timestamp"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,-3,,\n",
                     r"row 3, column 2 \(requests\): negative count -3", id="negative"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,5,-1.5,\n",
                     r"row 3, column 3 \(prompt_tokens\): negative count -1.5", id="negative-tokens"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,inf,,\n",
                     "row 3, column 2 \\(requests\\): 'inf' is not a finite count", id="inf"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,-Infinity,,\n",
                     "row 3, column 2 \\(requests\\): '-Infinity' is not a finite", id="minus-inf"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,NaN,,\n",
                     "row 3, column 2 \\(requests\\): 'NaN' is not a finite count", id="nan"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,1e999,,\n",
                     "row 3, column 2 \\(requests\\): '1e999' is not a finite", id="overflow"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,5\x00,,\n",
                     "row 3, column 2 \\(requests\\): not a number", id="nul-byte"),
        pytest.param(HEADER + ROW + b"\n1970-01-01T00:01:00Z,5,,\n", "row 3: empty line",
                     id="blank-line"),
        pytest.param(HEADER + b'1970-01-01T00:00:00Z,"5\n",,\n', "row 2: bad quoting",
                     id="quote-spans-lines"),
        pytest.param(HEADER + ROW + b"1970-01-01T00:01:00Z,5,,\n2023-11-16T00:00:00Z,5,,\n",
                     r"row 4: 28,\d+,\d+ steps of 60 s after the first row", id="far-timestamp"),
        pytest.param(HEADER + ROW + ROW, "row 3: timestamp does not increase", id="repeated-row"),
        pytest.param(b"timestamp_utc,requests,requests\n" + ROW, "row 1: column 'requests' appears twice",
                     id="duplicate-column"),
        pytest.param(b"lorem ipsum dolor\n" * 1000, "first column must be 'timestamp_utc', got "
                     "'lorem ipsum dolor'", id="garbage"),
        pytest.param(HEADER + b"lorem ipsum dolor\n" * 1000, r"row 2: bad timestamp \['lorem",
                     id="garbage-after-header"),
        pytest.param(b"timestamp_utc\n" + ROW, "no value column", id="no-value-column"),
    ],
)
def test_hostile_files_are_refused_naming_file_and_row(tmp_path: Path, data: bytes,
                                                       match: str) -> None:
    path = _file(tmp_path, data)
    with pytest.raises(TraceError, match=match) as err:
        read_trace(path)
    assert str(err.value).startswith(f"{path}: ")
    assert len(str(err.value)) < 400  # a hostile cell is never echoed whole


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(gzip.compress(HEADER + b"0" * (4 * MAX_LINE_BYTES)),
                     "row 2: line longer than 64 KiB", id="gzip-bomb"),
        pytest.param(gzip.compress(HEADER + ROW * 50)[:-30], "cannot read", id="truncated-gzip"),
        pytest.param(b"\x1f\x8b" + b"not gzip at all" * 10, "cannot read", id="corrupt-gzip"),
    ],
)
def test_bad_gzip_is_refused(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(TraceError, match=match):
        read_trace(_file(tmp_path, data, "t.csv.gz"))


def test_too_many_values_are_refused_while_streaming(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traces, "MAX_VALUES", 30)  # 10 rows of 3 value columns
    rows = b"".join(b"1970-01-01T00:%02d:00Z,5,,\n" % m for m in range(12))
    with pytest.raises(TraceError, match=r"row 12: more than 30 values \(3 columns\)"):
        read_trace(_file(tmp_path, HEADER + rows))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbf" + HEADER + ROW, id="utf8-bom"),
        pytest.param((HEADER + ROW).replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(b'"timestamp_utc","requests"\n"1970-01-01T00:00:00Z","5"\n', id="quoted"),
        pytest.param(HEADER + b"1970-01-01T00:00:00Z,5\n", id="short-row"),
        pytest.param(HEADER + b"1970-01-01 00:00:00, 5 ,,\n", id="space-separated-iso"),
        pytest.param(b"timestamp_utc,requests,client_0,client_1\n" + ROW, id="extra-columns"),
    ],
)
def test_formats_read_today_still_read(tmp_path: Path, data: bytes) -> None:
    trace = read_trace(_file(tmp_path, data))
    assert trace.series.start == 0.0
    np.testing.assert_array_equal(trace.series.values, [5.0])


def test_every_shared_trace_in_the_trace_format_reads(shared_data: Path) -> None:
    """The real traces (ServeGen totals and per-client, Azure per minute); the per-request Azure
    logs are not in the trace format and are refused by their header, as before."""
    read = {p.name: read_trace(p) for p in sorted(shared_data.rglob("*_*min.csv*"))}
    assert len(read) == 8
    assert {t.step_seconds for t in read.values()} == {60, 600}
    for trace in read.values():
        values = np.concatenate([c.values for c in trace.columns.values()])
        assert np.nanmin(values) >= 0 and not np.isinf(values).any()
    assert len(read["m-large_per_client_10min.csv.gz"].columns) == 162
    with pytest.raises(TraceError, match="got 'TIMESTAMP'"):
        read_trace(shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv")
