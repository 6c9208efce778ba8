"""``forecast-eval`` through ``run(args)``: JSON contract, plot, exit code 2 on bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from forecasting import Series, eval_cli
from forecasting.traces import Trace, synthetic_trace, write_trace


@pytest.fixture(scope="module")
def trace_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "synthetic_1h.csv"
    write_trace(path, synthetic_trace(days=10, step_seconds=3600, seed=2))
    return path


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    return parser.parse_args([*argv, "--no-progress"])


def test_json_matches_the_contract(trace_csv: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    code = eval_cli.run(_args("--trace", str(trace_csv), "--horizon", "2h", "--refit-every", "1d",
                              "--json", str(out), "--plot", str(png)))
    assert code == 0
    report = json.loads(out.read_text())
    assert report["trace"] == str(trace_csv) and report["horizon_s"] == 7200
    assert report["selected"] in report["models"] and "auto" in report["models"]
    for block in report["models"].values():
        assert set(block) >= {"mase", "smape", "pinball", "coverage", "fit_seconds_median"}
        assert set(block["coverage"]) == {"0.1", "0.5", "0.9", "0.95"}
    assert report["models"]["seasonal_naive_1d"]["mase"] == pytest.approx(1.0)
    assert png.stat().st_size > 10_000
    assert "selected" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--horizon", "90m"], "--horizon 90m", id="horizon-off-grid"),
        pytest.param(["--horizon", "soon"], "--horizon 'soon'", id="horizon-garbage"),
        pytest.param(["--horizon", "1h", "--quantiles", "0.9,1.5"], "--quantiles", id="bad-quantile"),
        pytest.param(["--horizon", "5d"], "too long", id="horizon-too-long"),
        pytest.param(["--horizon", "1h", "--refit-every", "90m"], "--refit-every 90m", id="refit-off-grid"),
        pytest.param(["--horizon", "1h", "--refit-every", "often"], "--refit-every 'often'", id="refit-garbage"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(trace_csv: Path, argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cli.run(_args("--trace", str(trace_csv), *argv)) == 2
    assert message in capsys.readouterr().err


def test_missing_trace_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cli.run(_args("--trace", str(tmp_path / "nope.csv"))) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_trace_shorter_than_a_season_uses_plain_naive(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    day = synthetic_trace(days=1, step_seconds=60, seed=4).series
    short = Series(day.start, 60, day.values[:120])  # two hours, like the Azure traces
    path = tmp_path / "short.csv"
    write_trace(path, Trace("short", {"requests": short}))
    out = tmp_path / "short.json"
    assert eval_cli.run(_args("--trace", str(path), "--horizon", "5m", "--json", str(out))) == 0
    report = json.loads(out.read_text())
    assert report["baseline"] == "seasonal_naive_1m"
    assert report["models"]["seasonal_naive_1m"]["mase"] == pytest.approx(1.0)


def test_unwritable_json_exits_2_naming_the_flag(trace_csv: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing-dir" / "r.json"
    code = eval_cli.run(_args("--trace", str(trace_csv), "--horizon", "2h", "--refit-every", "5d",
                              "--json", str(target)))
    assert code == 2
    assert f"--json {target}" in capsys.readouterr().err
