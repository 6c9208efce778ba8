"""Request traces: the CSV format of ``docs/EVALUATION.md``, and a synthetic generator.

Format: ``timestamp_utc,requests[,prompt_tokens,output_tokens]``, one row per bucket, ISO-8601
UTC timestamps, a regular step, ``requests`` = arrivals in the bucket; gzip if the name ends in
``.gz``. Extra numeric columns (ServeGen's per-client files: ``client_0, client_1, ...``) are
read too. The step is the smallest gap between rows; a row whose gap is a whole number of steps
leaves missing buckets (NaN); any other gap is an error naming the row.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from forecasting.types import FloatArray, Series


class TraceError(ValueError):
    """The trace file cannot be read as a regular trace; the message names the file and row."""


@dataclass(frozen=True)
class Trace:
    """A regular trace: every column shares ``start`` and ``step_seconds``."""

    name: str
    columns: Mapping[str, Series]
    missing_rows: int = 0
    """Buckets absent from the file (filled with NaN)."""

    @property
    def series(self) -> Series:
        """Requests per bucket (the ``requests`` column, else the first column)."""
        if "requests" in self.columns:
            return self.columns["requests"]
        return next(iter(self.columns.values()))

    @property
    def step_seconds(self) -> int:
        return self.series.step_seconds


def read_trace(path: str | Path) -> Trace:
    """Read a trace CSV (gzip ok). Raises :class:`TraceError` naming the problem and row."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    if len(rows) < 2:
        raise TraceError(f"{path}: no data rows (need a header and at least one row)")
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != "timestamp_utc":
        raise TraceError(f"{path}: first column must be 'timestamp_utc', got {header[:1]}")
    times = _parse_times(path, rows[1:])
    start, step, index = _regular_grid(path, times)
    n = int(index[-1]) + 1
    columns = {name: Series(start, step, _column(path, rows[1:], j, index, n))
               for j, name in enumerate(header[1:], start=1)}
    if not columns:
        raise TraceError(f"{path}: no value column (expected 'requests')")
    return Trace(path.name, columns, missing_rows=n - len(times))


def _parse_times(path: Path, rows: list[list[str]]) -> FloatArray:
    times = np.empty(len(rows))
    for i, row in enumerate(rows):
        try:
            stamp = datetime.fromisoformat(row[0].strip())
            if stamp.tzinfo is None:  # the column is UTC by contract, not local time
                stamp = stamp.replace(tzinfo=UTC)
            times[i] = stamp.timestamp()
        except (ValueError, IndexError) as exc:
            raise TraceError(f"{path}: row {i + 2}: bad timestamp {row[:1]}: {exc}") from exc
    return times


def _regular_grid(path: Path, times: FloatArray) -> tuple[float, int, FloatArray]:
    """Start, step (seconds) and the grid index of every row; rejects irregular rows."""
    diffs = np.diff(times)
    bad = np.flatnonzero(diffs <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise TraceError(f"{path}: row {i + 2}: timestamp does not increase "
                         f"({times[i - 1]:.0f} -> {times[i]:.0f} unix s)")
    step = round(float(diffs.min())) if diffs.size else 60
    if step <= 0:
        raise TraceError(f"{path}: step rounds to {step} s; timestamps must be >= 1 s apart")
    index = (times - times[0]) / step
    off = np.flatnonzero(np.abs(index - np.round(index)) > 1e-6)
    if off.size:
        i = int(off[0])
        raise TraceError(
            f"{path}: row {i + 2}: irregular timestamp: {times[i] - times[i - 1]:.0f} s after "
            f"the previous row, not a multiple of the {step} s step; resample to a regular step"
        )
    return float(times[0]), step, np.round(index)


def _column(path: Path, rows: list[list[str]], j: int, index: FloatArray, n: int) -> FloatArray:
    out = np.full(n, np.nan)
    for i, row in enumerate(rows):
        cell = row[j].strip() if j < len(row) else ""
        if not cell:
            continue
        try:
            out[int(index[i])] = float(cell)
        except ValueError as exc:
            msg = f"{path}: row {i + 2}, column {j + 1}: not a number: {cell!r}"
            raise TraceError(msg) from exc
    return out


def write_trace(path: str | Path, trace: Trace) -> None:
    """Write a trace in the CSV format (for tests and examples); NaN -> empty cell."""
    names = list(trace.columns)
    base = trace.columns[names[0]]
    lines = ["timestamp_utc," + ",".join(names)]
    for i, t in enumerate(base.times()):
        stamp = datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cells = [_cell(trace.columns[c].values[i]) for c in names]
        lines.append(stamp + "," + ",".join(cells))
    data = ("\n".join(lines) + "\n").encode()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def _cell(value: float) -> str:
    if math.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def synthetic_trace(
    *, days: int = 14, step_seconds: int = 60, seed: int = 0, peak_per_minute: float = 200.0
) -> Trace:
    """Poisson arrivals with a daily cycle (evening peak ~2.5x the night trough) and a quieter
    weekend (days 5 and 6 of each week at 60 %): what LLM inference traffic mostly looks like.

    Deterministic for a given ``seed``; starts at unix 0 (a Thursday, but day 0 is "Monday").
    """
    if days <= 0 or step_seconds <= 0 or peak_per_minute <= 0:
        raise ValueError("days, step_seconds and peak_per_minute must be > 0")
    t = np.arange(days * 86400 // step_seconds) * step_seconds
    hour = (t % 86400) / 3600.0
    daily = 0.4 + 0.6 * np.exp(-0.5 * ((hour - 19.0) / 4.0) ** 2) + 0.2 * np.exp(
        -0.5 * ((hour - 11.0) / 2.5) ** 2)
    weekday = np.where((t // 86400) % 7 >= 5, 0.6, 1.0)
    rate = peak_per_minute * (step_seconds / 60.0) * daily * weekday
    counts = np.random.default_rng(seed).poisson(rate).astype(np.float64)
    return Trace("synthetic", {"requests": Series(0.0, step_seconds, counts)})
