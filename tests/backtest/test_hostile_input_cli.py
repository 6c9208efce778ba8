"""The installed ``prewarm`` command on hostile trace files and bad durations: exit 2, a message
naming the file and row (or the flag), and no traceback, for every command that reads a trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = b"timestamp_utc,requests,prompt_tokens,output_tokens\n"
ROW = b"1970-01-01T00:00:00Z,5,,\n"
COMMANDS = {
    "backtest": ["backtest", "--no-progress"],
    "forecast-eval": ["forecast-eval", "--no-progress"],
    "demo": ["demo", "--no-live", "--no-backtest"],
}
FILES = {
    "non-utf8": (HEADER + ROW + b"1970-01-01T00:01:00Z,caf\xe9,,\n", "row 3: not UTF-8 text"),
    "one-line": (HEADER + b"9," * 40_000, "row 2: line longer than 64 KiB"),
    "negative": (HEADER + ROW + b"1970-01-01T00:01:00Z,-4,,\n",
                 "row 3, column 2 (requests): negative count -4"),
    "inf": (HEADER + ROW + b"1970-01-01T00:01:00Z,inf,,\n",
            "row 3, column 2 (requests): 'inf' is not a finite count"),
    "nan": (HEADER + ROW + b"1970-01-01T00:01:00Z,5,nan,\n",
            "row 3, column 3 (prompt_tokens): 'nan' is not a finite count"),
}


def prewarm(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script of the environment under test, as a user runs it."""
    script = Path(sys.executable).with_name("prewarm")
    assert script.exists(), f"{script}: install the project (scripts/bootstrap.sh)"
    return subprocess.run([str(script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def _assert_usage_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


# Every kind through backtest; the other commands on two kinds each (the reader is shared, the
# point is that each command turns its error into exit 2).
CASES = [("backtest", kind) for kind in FILES] + [
    (command, kind) for command in ("forecast-eval", "demo") for kind in ("non-utf8", "inf")]


@pytest.mark.parametrize(("command", "kind"), CASES)
def test_hostile_trace_exits_2_naming_file_and_row(tmp_path: Path, command: str,
                                                   kind: str) -> None:
    data, message = FILES[kind]
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(data)
    _assert_usage_error(prewarm(*COMMANDS[command], "--trace", str(path)), f"{path}: {message}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["backtest", "--cold-start", "5"],
                     "--cold-start '5' is not a duration: a bare number has no unit; "
                     "expected a duration like 90s, 5m or 1h30m", id="backtest-bare-number"),
        pytest.param(["backtest", "--cold-start", "-3m"],
                     "--cold-start '-3m' is not a duration: it is negative", id="backtest-negative"),
        pytest.param(["demo", "--cold-start", "-3m"],
                     "--cold-start '-3m' is not a duration: it is negative", id="demo-negative"),
        pytest.param(["forecast-eval", "--horizon", "-30m"],
                     "--horizon '-30m' is not a duration: it is negative", id="eval-negative"),
        pytest.param(["forecast-eval", "--horizon", "30"],
                     "--horizon '30' is not a duration: a bare number", id="eval-bare-number"),
    ],
)
def test_bad_duration_flag_exits_2_with_the_expected_form(tmp_path: Path, args: list[str],
                                                          message: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_bytes(HEADER + ROW)
    _assert_usage_error(prewarm(*args, "--trace", str(trace)), message)
