"""``prewarm backtest`` end to end on a short synthetic trace: table, JSON contract, plot, errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from forecasting.traces import synthetic_trace, write_trace
from scaler.backtest.cli import main
from scaler.backtest.report import headline

FAST = ["--quantiles", "0.5,0.9", "--headrooms", "1,1.3", "--jobs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "synthetic_5min.csv"
    write_trace(path, synthetic_trace(days=3, step_seconds=300, seed=3))
    return path


@pytest.fixture(scope="module")
def report(trace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("out")
    code = main(["--trace", str(trace), "--warmup", "2d", "--cold-start", "20m", *FAST,
                 "--json", str(out / "r.json"), "--plot", str(out / "plots" / "r.png")])
    assert code == 0
    assert (out / "plots" / "r.png").stat().st_size > 10_000
    data: dict[str, object] = json.loads((out / "r.json").read_text())
    return data


def test_json_contract(report: dict[str, object]) -> None:
    assert isinstance(report["trace"], str) and report["trace"].endswith("synthetic_5min.csv")
    assert report["minutes"] == 1440  # the evaluation window: 3 days minus 2 days of warmup
    assert report["cold_start_s"] == 1200
    oracle = report["oracle"]
    assert isinstance(oracle, dict) and oracle["gpu_hours"] > 0
    policies = report["policies"]
    assert isinstance(policies, dict)
    assert set(policies) == {"predictive", "reactive-util", "reactive-queue", "static"}
    for name, block in policies.items():
        assert set(block["cost_at_slo"]) == {"0.99", "0.999"}, name
        for point in block["points"]:
            assert {"knob", "slo_attainment", "gpu_hours"} <= set(point), name
            assert 0.0 <= point["slo_attainment"] <= 1.0
            assert point["gpu_hours"] > 0
        for cost in block["cost_at_slo"].values():
            assert cost is None or cost >= oracle["gpu_hours"] - 1e-9, name
    settings, forecaster = report["settings"], report["forecaster"]
    assert isinstance(settings, dict) and isinstance(forecaster, dict)
    assert settings["refit_every_s"] == 6 * 3600  # a short trace: the default interval
    assert forecaster["fits"] == 5  # from a refit interval before the window (2 days), every 6 h
    assert len(policies["predictive"]["points"]) == 4
    assert len(policies["reactive-util"]["points"]) == 8
    assert len(policies["reactive-queue"]["points"]) == 6


def test_the_comparison_is_with_the_cheapest_baseline(report: dict[str, object]) -> None:
    policies, versus = report["policies"], report["predictive_vs_cheapest_baseline"]
    assert isinstance(policies, dict) and isinstance(versus, dict) and set(versus) == {"0.99", "0.999"}
    for slo, block in versus.items():
        costs = {n: policies[n]["cost_at_slo"][slo] for n in ("reactive-util", "reactive-queue", "static")}
        reached = {n: c for n, c in costs.items() if c is not None}
        assert block["cheapest_baseline"] == (min(reached, key=lambda n: reached[n]) if reached else None)


class _Sweep:
    def __init__(self, cost: float | None) -> None:
        self.cost = cost

    def cost_at(self, slo: float) -> float | None:
        return self.cost


def test_headline_names_static_when_it_is_cheapest() -> None:
    # m-mid at 20m: a fixed count beat every reactive policy and the predictive sweep.
    bt = SimpleNamespace(sweeps={"predictive": _Sweep(110.0), "reactive-util": _Sweep(120.0),
                                 "reactive-queue": _Sweep(None), "static": _Sweep(100.0)})
    line = headline(bt, 0.99)  # type: ignore[arg-type]
    assert line == ("at 99 % on time: cheapest baseline static, 100.0 GPU-hours (others: reactive-util 120.0, "
                    "reactive-queue never reaches it); predictive 110.0 = 1.100 x static (dearer)")
    bt.sweeps = {"static": _Sweep(None)}
    assert headline(bt, 0.999) == "at 99.9 % on time: no baseline reaches it at any knob"  # type: ignore[arg-type]


def test_sane_figures_on_seasonal_traffic(report: dict[str, object]) -> None:
    policies = report["policies"]
    assert isinstance(policies, dict)
    # Static at 1.5x the peak never misses; the predictive and reactive-util reach 99 %.
    assert max(p["slo_attainment"] for p in policies["static"]["points"]) == 1.0
    assert policies["predictive"]["cost_at_slo"]["0.99"] is not None
    assert policies["reactive-util"]["cost_at_slo"]["0.99"] is not None


def test_table_names_every_policy(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--trace", str(trace), "--warmup", "2d", "--policies", "reactive-util,static",
                 "--cold-start", "8m:14m", *FAST])
    assert code == 0
    out = capsys.readouterr().out
    for word in ("oracle", "reactive-util", "static", "cost@0.99", "u=0.7", "cold start 8m:14m",
                 "at 99 % on time: cheapest baseline "):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--trace", "/nonexistent/t.csv"], "/nonexistent/t.csv", id="missing file"),
        pytest.param([], "exactly one of --trace CSV or --prometheus URL", id="no source"),
        pytest.param(["--prometheus", "http://127.0.0.1:9"], "--model", id="prometheus without model"),
        pytest.param(["TRACE", "--cold-start", "fast"], "--cold-start 'fast'", id="bad duration"),
        pytest.param(["TRACE", "--cold-start", "14m:8m"], "from low to high", id="reversed range"),
        pytest.param(["TRACE", "--policies", "predictive,magic"], "--policies", id="unknown policy"),
        pytest.param(["TRACE", "--warmup", "10d"], "--warmup", id="warmup longer than trace"),
        pytest.param(["TRACE", "--peak-replicas", "0"], "--peak-replicas 0", id="peak replicas"),
        pytest.param(["TRACE", "--capacity", "-3"], "--capacity", id="capacity"),
        pytest.param(["TRACE", "--min-replicas", "5", "--max-replicas", "2"], "--max-replicas 2",
                     id="max below min"),
        pytest.param(["TRACE", "--polling-interval", "0s"], "--polling-interval", id="polling"),
        pytest.param(["TRACE", "--quantiles", "0.3"], "--quantiles", id="quantile range"),
        pytest.param(["TRACE", "--refit-every", "10s"], "--refit-every", id="refit"),
        pytest.param(["TRACE", "--eval-span", "ALL"], "--eval-span 'ALL' is not a duration", id="eval span garbage"),
        pytest.param(["TRACE", "--eval-span", "10m"], "--eval-span 10m: must be at least 1h",
                     id="eval span short"),
        pytest.param(["TRACE", "--jobs", "0"], "--jobs 0: must be >= 1", id="no jobs"),
        pytest.param(["TRACE", "--jobs", "100000"], "--jobs 100000: at most", id="too many jobs"),
        pytest.param(["TRACE", "--model", "x"], "--model goes with --prometheus", id="model w/o prom"),
        pytest.param(["TRACE", "--json", "/proc/nope/r.json"], "--json /proc/nope/r.json", id="json path"),
        pytest.param(["TRACE", "--plot", "/"], "--plot /: not a writable file path", id="plot is a dir"),
    ],
)
def test_bad_input_exits_2_naming_it(argv: list[str], message: str, trace: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a if a != "TRACE" else "--trace" for a in argv]
    if argv and argv[0] == "--trace" and len(argv) > 1 and argv[1].startswith("--"):
        argv.insert(1, str(trace))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("prewarm backtest: error: ") and message in err


def test_irregular_trace_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "irregular.csv"
    path.write_text("timestamp_utc,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:10:00Z,5\n"
                    "2026-01-01T00:25:00Z,5\n")
    assert main(["--trace", str(path)]) == 2
    assert "irregular" in capsys.readouterr().err


def _close(a: object, b: object) -> bool:
    """Equal JSON, floats to 1e-9 (a cut trace sums its minutes' arrivals in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def test_a_long_trace_is_scored_on_its_last_span_as_if_cut_there(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # 24 days at 10 minutes; the last day scored, replayed from 21 days before it: 2 days skipped
    whole = tmp_path / "whole.csv"
    write_trace(whole, synthetic_trace(days=24, step_seconds=600, seed=2))
    lines = whole.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    cut.write_text(lines[0] + "".join(lines[1 + 2 * 144:]))
    runs = ["--quantiles", "0.9", "--headrooms", "1", "--jobs", "1", "--no-progress", "--slo", "0.99",
            "--policies", "predictive,static"]
    assert main(["--trace", str(whole), "--eval-span", "1d", *runs, "--json", str(tmp_path / "a.json")]) == 0
    assert "its first 2d are not replayed; --eval-span all scores every minute" in capsys.readouterr().out
    a = json.loads((tmp_path / "a.json").read_text())
    assert (a["minutes"], a["warmup_minutes"], a["skipped_minutes"], a["trace_minutes"]) == (
        1440, 21 * 1440, 2 * 1440, 24 * 1440)
    # the same run on the trace cut there, with the whole trace's capacity and the run-in as warmup
    assert main(["--trace", str(cut), "--warmup", "21d", "--capacity", repr(a["capacity_per_replica"]),
                 "--eval-span", "all", *runs, "--json", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["skipped_minutes"] == 0
    for key in ("trace", "trace_minutes", "skipped_minutes", "seconds"):
        del a[key], b[key]
    assert a["auto"]["gpu_hours"] > 0 and _close(a, b)
