"""Golden tests on a real trace (ServeGen m-small): forecast values and headline figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from forecasting.evaluate import EvalSpec, evaluate
from forecasting.traces import read_trace

HERE = Path(__file__).resolve().parent


def _make_golden() -> object:
    spec = importlib.util.spec_from_file_location("make_golden", HERE / "make_golden.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_auto_forecast_matches_golden_file(servegen: Path) -> None:
    golden = _make_golden()
    expected = (HERE / "golden" / "m_small_fit_auto_10d_h3.csv").read_text().splitlines()
    forecast = golden.golden_forecast()  # type: ignore[attr-defined]
    assert expected[0] == f"# model={forecast.model}"
    table = np.array([[float(c) for c in line.split(",")] for line in expected[2:]])
    np.testing.assert_allclose(forecast.mean, table[:, 1], rtol=1e-4)
    for column, q in enumerate(sorted(forecast.quantiles), start=2):
        np.testing.assert_allclose(forecast.quantiles[q], table[:, column], rtol=1e-4)


@pytest.mark.slow
def test_m_small_headline_figures(servegen: Path) -> None:
    """Issue 3 targets at 30 minutes: MASE <= 0.75, p90 coverage in [0.87, 0.93].

    Refits once a day here (update() in between) to stay fast; docs/FORECASTING.md records the
    full run (refit every 6 h).
    """
    series = read_trace(servegen / "m-small_10min.csv").series
    report, _ = evaluate(series, EvalSpec(horizon_steps=3, refit_every_steps=144,
                                          quantiles=(0.5, 0.9)))
    auto = report["models"]["auto"]
    assert auto["mase"] <= 0.75
    assert 0.87 <= auto["coverage"]["0.9"] <= 0.93
    assert report["models"]["seasonal_naive_1d"]["mase"] == pytest.approx(1.0)
    assert report["excluded_points"] > 0  # collection gaps are not scored
