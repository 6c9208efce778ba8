"""A missing forecast is shown as missing, with the reason (a demoted forecast, not fitted yet),
never as "forecast-peak nan": in the demo's live view and in the backtest's table."""

from __future__ import annotations

import io
import math
from pathlib import Path

from scaler.backtest.live import Record, view_lines
from scaler.backtest.report import _print_forecaster
from tests.cli.conftest import Run

INFO = {"now": 0.0, "done": 0.5, "address": "127.0.0.1:9090", "polling": 30.0, "cold": "20m",
        "quantile": 90.0, "slo": 0.99, "on_time": 0.995, "margin": 1.2, "lead": 1260.0,
        "reason": "reactive", "forecaster": "ets_damped", "no_forecast": None}


def _record(peak: float) -> Record:
    rec = Record()
    for minute in range(3):
        rec.minutes.append(minute)
        rec.arrivals.append(100.0)
        rec.demand.append(5.0)
        rec.forecast_peak.append(peak)
        rec.answered.append(6)
        rec.ordered.append(6)
        rec.ready.append(6)
        rec.late.append(0.0)
        rec.billed.append(6)
    return rec


def test_a_demoted_forecast_is_shown_with_its_reason() -> None:
    why = "forecast demoted: ets_damped skill 1.31 >= maxSkill 1"
    lines = view_lines(_record(math.nan), {**INFO, "no_forecast": why})
    text = "\n".join(lines)
    assert "nan" not in text
    assert f"forecast          none: {why}; scaled reactively" in text
    assert f"no forecast ({why}; scaled reactively) -> 6 replicas" in lines[-1]


def test_a_forecast_peak_is_shown_as_a_number() -> None:
    lines = view_lines(_record(7.25), INFO)
    assert "forecast p90 peak     7.2 replicas" in "\n".join(lines)
    assert "forecast-peak 7.2 -> 6 replicas" in lines[-1]


def test_the_backtest_table_says_how_often_the_forecast_was_demoted_and_why() -> None:
    out = io.StringIO()
    _print_forecaster({"fits": 28, "models": {"ets_damped": 20, "mstl_ets": 8}, "demoted_share": 0.125,
                       "last_demotion": "forecast demoted: ets_damped skill 1.05 >= maxSkill 1"}, out)
    assert out.getvalue() == ("forecaster: 28 fits (ets_damped x20, mstl_ets x8); demoted to reactive on "
                              "12.5 % of decision minutes (last: forecast demoted: ets_damped skill 1.05 "
                              ">= maxSkill 1)\n")


def test_the_demo_status_lines_never_print_nan(prewarm: Run, tmp_path: Path) -> None:
    result = prewarm("demo", "--hours", "1", "--speed", "200000", "--no-backtest", "--no-live",
                     "--plot", str(tmp_path / "live.png"), timeout=300)
    assert result.returncode == 0, result.stderr
    status = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert status and not any("nan" in line for line in status)


