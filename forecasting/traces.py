"""Request traces: the CSV format of docs/BACKTEST.md ("Trace files"), and a synthetic generator.

Format: ``timestamp_utc,requests[,prompt_tokens,output_tokens]``, one row per bucket, ISO-8601
UTC timestamps, a regular step, ``requests`` = arrivals in the bucket; gzip if the file starts
with gzip's magic bytes. Extra numeric columns (ServeGen's per-client files: ``client_0,
client_1, ...``) are read too. The step is the smallest gap between rows; a row whose gap is a
whole number of steps leaves missing buckets (NaN), as does an empty cell; any other gap is an
error naming the row.

:func:`read_trace` is the one reader of trace files (``backtest``, ``demo``, ``forecast-eval``
and the replay source of ``serve``'s ``replay.trace``). Files come from users, so it
streams them line by line under explicit limits and stops at the first bad row: a hostile file
(one giant line, megabytes of garbage, non-UTF-8 bytes, a gzip bomb, a gap of decades) is
refused at its first bad line, with memory bounded by
:data:`MAX_LINE_BYTES` and :data:`MAX_VALUES`. Counts must be finite and >= 0.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from array import array
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from forecasting.types import FloatArray, Series

MAX_LINE_BYTES = 64 * 1024
"""Longest line, newline included. 64 KiB holds thousands of columns (ServeGen's widest header,
162 clients, is 1.9 KiB). It is also below the field limit of the csv module (128 KiB), which
splits lines that carry quotes, so a giant line is refused here, by row, not by csv."""

MAX_CELL_CHARS = 128
"""Longest cell or column name: an ISO timestamp with nanoseconds and an offset is 35."""

MAX_VALUES = 5_000_000
"""Most values held: buckets (missing ones included) x value columns, 40 MB of float64 per copy.
A year of one-minute buckets is 525,600 per column; ServeGen's widest file has 326,592."""

_GZIP_MAGIC = b"\x1f\x8b"


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
    """Read a trace CSV (gzip ok). Raises :class:`TraceError` naming the file, row and problem."""
    path = Path(path)
    try:
        with _open(path) as fh:
            return _read(path, fh)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a corrupt / truncated gzip
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TraceError(f"{path}: cannot read: {reason}") from exc


@contextmanager
def _open(path: Path) -> Iterator[io.BufferedIOBase]:
    with path.open("rb") as raw:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


class _Lines:
    """The file's rows, one line each, decoded and split one at a time under
    :data:`MAX_LINE_BYTES`; counts them so every error can name its row (row 1 is the header)."""

    def __init__(self, path: Path, fh: io.BufferedIOBase) -> None:
        self.path, self.fh, self.number = path, fh, 0

    def __iter__(self) -> Iterator[list[str]]:
        while line := self.fh.readline(MAX_LINE_BYTES + 1):
            self.number += 1
            if len(line) > MAX_LINE_BYTES:
                raise self.error(f"line longer than {MAX_LINE_BYTES // 1024} KiB; not a trace CSV")
            try:  # a BOM is what spreadsheet programs put before "timestamp_utc"
                text = line.decode("utf-8-sig" if self.number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise self.error(f"not UTF-8 text (byte {line[exc.start]:#04x} at byte "
                                 f"{exc.start + 1} of the line); save the file as UTF-8") from None
            yield self._split(text) if '"' in text else text.split(",")

    def _split(self, text: str) -> list[str]:
        """A line with quotes, by the csv rules; a quote left open is an error, as a quoted
        cell may not span lines (no trace cell needs a newline)."""
        try:
            return next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise self.error(f"bad quoting: {exc}") from None

    def error(self, message: str, column: str = "") -> TraceError:
        where = f"row {self.number}, {column}" if column else f"row {self.number}"
        return TraceError(f"{self.path}: {where}: {message}")


def _read(path: Path, fh: io.BufferedIOBase) -> Trace:
    lines = _Lines(path, fh)
    rows = iter(lines)
    names = _header(path, next(rows, None))
    times, cells = _rows(lines, rows, names)
    if not times:
        raise TraceError(f"{path}: no data rows (need a header and at least one row)")
    start, step, index = _regular_grid(path, np.frombuffer(times))
    n = int(index[-1]) + 1
    if n * len(names) > MAX_VALUES:  # a far-off timestamp would need a grid of missing buckets
        i = int(np.argmax(index >= MAX_VALUES // len(names)))
        raise TraceError(f"{path}: row {i + 2}: {index[i]:,.0f} steps of {step} s after the first "
                         f"row; with {len(names)} columns the trace would hold more than "
                         f"{MAX_VALUES:,} values; check the timestamp or resample to a coarser step")
    columns = {name: Series(start, step, _on_grid(col, index, n))
               for name, col in zip(names, cells, strict=True)}
    return Trace(path.name, columns, missing_rows=n - len(times))


def _header(path: Path, row: list[str] | None) -> list[str]:
    """The value columns' names, from the header row."""
    if row is None:
        raise TraceError(f"{path}: no data rows (need a header and at least one row)")
    header = [h.strip() for h in row]
    if not header or header[0] != "timestamp_utc":
        first = repr(header[0][:40]) if header else "nothing"
        raise TraceError(f"{path}: first column must be 'timestamp_utc', got {first}")
    names = header[1:]
    if not names:
        raise TraceError(f"{path}: no value column (expected 'requests')")
    long = [h for h in names if len(h) > MAX_CELL_CHARS]
    if long:
        raise TraceError(f"{path}: row 1: column name longer than {MAX_CELL_CHARS} characters: "
                         f"{long[0][:40]!r}...")
    twice = [h for i, h in enumerate(names) if h and h in names[:i]]
    if twice:
        raise TraceError(f"{path}: row 1: column {twice[0]!r} appears twice")
    return names


def _rows(lines: _Lines, rows: Iterator[list[str]],
          names: list[str]) -> tuple[array[float], list[array[float]]]:
    """Timestamps and value columns, row by row; stops at the first bad row."""
    times: array[float] = array("d")
    cells = [array("d") for _ in names]
    where = [f"column {j + 2} ({name})" for j, name in enumerate(names)]
    rows_allowed = MAX_VALUES // len(names)
    for row in rows:
        if row == [""]:
            raise lines.error("empty line")
        if len(times) >= rows_allowed:
            raise lines.error(f"more than {MAX_VALUES:,} values ({len(names)} columns); split "
                              f"the trace or resample it to a coarser step")
        t = _timestamp(lines, row[0])
        if times and t <= times[-1]:
            raise lines.error(f"timestamp does not increase ({times[-1]:.0f} -> {t:.0f} unix s)")
        times.append(t)
        row.extend([""] * (len(cells) + 1 - len(row)))  # short rows: missing cells are empty
        for j, column in enumerate(cells):
            cell = row[j + 1]
            try:  # the common case first and tight: this loop is most of the reading time
                value = float(cell)
            except ValueError:
                value = _empty_cell(lines, where[j], cell)
            else:
                if not 0.0 <= value < math.inf or len(cell) > MAX_CELL_CHARS:
                    _refuse_value(lines, where[j], cell)
            column.append(value)
    return times, cells


def _timestamp(lines: _Lines, cell: str) -> float:
    if len(cell) > MAX_CELL_CHARS:
        raise lines.error(f"bad timestamp: longer than {MAX_CELL_CHARS} characters")
    try:
        stamp = datetime.fromisoformat(cell.strip())
    except ValueError as exc:
        raise lines.error(f"bad timestamp {[cell]}: {exc}") from None
    if stamp.tzinfo is None:  # the column is UTC by contract, not local time
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _empty_cell(lines: _Lines, where: str, cell: str) -> float:
    """A cell ``float`` refused: empty is a missing bucket (NaN), anything else an error."""
    if not cell.strip():
        return math.nan
    if len(cell) > MAX_CELL_CHARS:
        raise lines.error(f"cell longer than {MAX_CELL_CHARS} characters", where)
    raise lines.error(f"not a number: {cell.strip()!r}", where)


def _refuse_value(lines: _Lines, where: str, cell: str) -> None:
    """A number that is not a count: too long, negative, infinite or NaN."""
    if len(cell) > MAX_CELL_CHARS:
        raise lines.error(f"cell longer than {MAX_CELL_CHARS} characters", where)
    if math.isfinite(float(cell)):
        raise lines.error(f"negative count {cell.strip()}; counts must be >= 0", where)
    raise lines.error(f"{cell.strip()!r} is not a finite count; leave the cell empty for a "
                      f"missing bucket", where)


def _regular_grid(path: Path, times: FloatArray) -> tuple[float, int, FloatArray]:
    """Start, step (seconds) and the grid index of every row (increasing, checked while
    reading); rejects irregular rows."""
    diffs = np.diff(times)
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


def _on_grid(values: array[float], index: FloatArray, n: int) -> FloatArray:
    out = np.full(n, np.nan)
    out[index.astype(np.int64)] = np.frombuffer(values)
    return out


def format_timestamp(epoch: float) -> str:
    """Unix seconds as the format's ``timestamp_utc`` (``2026-01-05T00:00:00Z``)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_trace(path: str | Path, trace: Trace) -> None:
    """Write a trace in the CSV format (for tests and examples); NaN -> empty cell."""
    names = list(trace.columns)
    base = trace.columns[names[0]]
    lines = ["timestamp_utc," + ",".join(names)]
    for i, t in enumerate(base.times()):
        cells = [_cell(trace.columns[c].values[i]) for c in names]
        lines.append(format_timestamp(t) + "," + ",".join(cells))
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
