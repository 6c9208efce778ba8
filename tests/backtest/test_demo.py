"""``prewarm demo`` end to end: real engine + gRPC server + KEDA-like poller, then the backtest."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from scaler.backtest.live import sparkline
from scaler.core.config import parse_settings
from scaler.demo import DemoSource, add_arguments, keda_value, run
from tests.backtest.support import scenario


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.slow
def test_demo_runs_live_then_compares_with_the_backtest(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    png, report = tmp_path / "demo" / "demo.png", tmp_path / "demo.json"
    code = run(args("--hours", "3", "--speed", "200000", "--no-live", "--plot", str(png),
                    "--json", str(report)))
    assert code == 0
    out = capsys.readouterr().out
    assert "demand" in out and "replicas" in out  # the plain live lines
    for policy in ("oracle", "predictive", "reactive-util", "reactive-queue", "static"):
        assert policy in out
    # The real engine over gRPC and the backtest's self-tuned policy, both given only the SLO,
    # agree (they differ only in when the fits and retunes happen).
    assert "; SLO 99% on time, measured " in out  # the live view shows the target and the share
    assert "self-tuned (--slo 0.99, one run, no hindsight)" in out
    match = re.search(r"SLO attainment ([\d.]+), ([\d.]+) GPU-hours; backtest self-tuned policy on the "
                      r"same window: ([\d.]+), ([\d.]+) GPU-hours", out)
    assert match is not None
    live_slo, live_gpu, bt_slo, bt_gpu = (float(x) for x in match.groups())
    assert abs(live_slo - bt_slo) < 0.01 and abs(live_gpu / bt_gpu - 1) < 0.05
    assert png.stat().st_size > 20_000 and report.stat().st_size > 1_000


def test_demo_without_backtest_writes_the_live_plot(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "live.png"
    assert run(args("--hours", "1", "--speed", "200000", "--no-backtest", "--plot", str(png))) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) >= 2 and "GPU-h" in lines[-1]
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--hours", "400"], "--hours", id="too long"),
        pytest.param(["--history", "2h"], "--history", id="history shorter than a day"),
        pytest.param(["--cold-start", "soon"], "--cold-start", id="bad cold start"),
        pytest.param(["--trace", "/nonexistent.csv"], "/nonexistent.csv", id="missing trace"),
        pytest.param(["--speed", "0"], "--speed", id="speed"),
        pytest.param(["--plot", "/proc/x/demo.png"], "--plot /proc/x/demo.png", id="unwritable plot"),
    ],
)
def test_bad_flags_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args(*argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("prewarm demo: error: ") and message in err


def test_source_reports_last_minute_plus_backlog_and_history_of_arrivals() -> None:
    sc = scenario([10, 20, 30, 40])
    source = DemoSource(sc)
    source.minute, source.backlog = 2, 5.0
    model = parse_settings({"replay": {}, "models": [{"name": "demo", "capacityPerReplica": 1}]}).settings.models[0]
    assert source.observe([model], now=sc.start + 120)["demo"].demand == 25.0  # a(1) + backlog
    history = source.history(model, start=sc.start + 60, end=sc.start + 180, step_seconds=60)
    assert history.values.tolist() == [20.0, 30.0] and history.start == sc.start + 60
    assert source.observe([model], now=sc.start + 120)["demo"].signals == {}  # no share measured yet
    source.on_time_requests = 0.0  # read, and nothing finished: an idle window
    assert source.observe([model], now=sc.start + 120)["demo"].signals == {"slo_requests": 0.0}
    source.on_time, source.on_time_requests = 0.95, 60.0
    # The share and the requests behind it, as the Prometheus source reads them.
    assert source.observe([model], now=sc.start + 120)["demo"].signals == {
        "slo_on_time_ratio": 0.95, "slo_requests": 60.0}


@pytest.mark.parametrize(
    ("f", "i", "value"),
    [(3.0, 0, 3.0), (0.0, 4, 4.0), (float("nan"), 2, 2.0), (-1.0, -5, 0.0), (1.23456, 0, 1.235)],
)
def test_keda_value_rules(f: float, i: int, value: float) -> None:
    assert keda_value(f, i) == value


def test_sparkline_scales_to_top() -> None:
    # The last width x 3 minutes, three per character (their max).
    line = sparkline([99.0, *np.linspace(0, 10, 18)], 10.0, width=6)
    assert len(line) == 6 and line[0] == "▁" and line[-1] == "█"
