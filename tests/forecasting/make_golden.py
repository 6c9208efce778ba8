"""Regenerate tests/forecasting/golden/*.csv (run by hand after an intended model change).

    .venv/bin/python tests/forecasting/make_golden.py
"""

from __future__ import annotations

from pathlib import Path

from forecasting import Forecast, Series, fit_auto
from forecasting.traces import read_trace

HERE = Path(__file__).resolve().parent
TRACE = HERE.parents[1] / ".." / "shared" / "data" / "servegen" / "m-small_10min.csv"
GOLDEN = HERE / "golden" / "m_small_fit_auto_10d_h3.csv"
DAYS, H, STEPS = 10, 3, 12


def golden_forecast() -> Forecast:
    """fit_auto on the first 10 days of m-small, 12 steps (2 h) from the end of day 10."""
    series = read_trace(TRACE).series
    head = Series(series.start, series.step_seconds, series.values[: DAYS * 144])
    return fit_auto(head, horizon_steps=H).forecast(STEPS)


def to_csv(forecast: Forecast) -> str:
    levels = sorted(forecast.quantiles)
    lines = [f"# model={forecast.model}", "step,mean," + ",".join(f"q{q}" for q in levels)]
    for i in range(forecast.h):
        cells = [f"{forecast.mean[i]:.6f}"] + [f"{forecast.quantiles[q][i]:.6f}" for q in levels]
        lines.append(f"{i + 1}," + ",".join(cells))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    GOLDEN.write_text(to_csv(golden_forecast()))
    print(GOLDEN.read_text())
