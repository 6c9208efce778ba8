"""``forecast-eval --history``: every fit sees at most the scaler's history window; ``--eval-span``:
the scored span is at most this long."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from forecasting import Series, eval_cli
from forecasting.evaluate import EvalSpec, origins, run_model
from forecasting.fitted import FittedForecaster
from forecasting.naive import SeasonalNaive
from forecasting.selection import fit_model
from forecasting.traces import synthetic_trace, write_trace


def test_origins_scored_every_kth_step_still_refit_every_refit_interval(hourly: Series) -> None:
    """Thinned origins (``max_origins``) keep the refit interval in steps, not in origins."""
    spec = EvalSpec(horizon_steps=2, refit_every_steps=6, history_steps=100, max_origins=20)
    fits: list[float] = []

    def fit(history: Series) -> FittedForecaster:
        fits.append(history.end)
        return fit_model(SeasonalNaive(season_seconds=86400), history, horizon_steps=2,
                         quantiles=spec.quantiles)

    span = origins(len(hourly), spec)
    assert span.step > 1 and len(span) <= 20
    run = run_model(hourly, spec, fit, "snaive")
    assert len(run.mean) == len(span)
    gaps = np.diff(fits) / 3600
    assert gaps.min() >= 6 and gaps.max() < 6 + span.step  # the first origin at least 6 steps on


def test_each_fit_sees_the_last_history_steps(hourly: Series) -> None:
    spec = EvalSpec(horizon_steps=2, refit_every_steps=24, history_steps=100)
    seen: list[tuple[float, float, int]] = []

    def fit(history: Series) -> FittedForecaster:
        seen.append((history.start, history.end, len(history)))
        return fit_model(SeasonalNaive(season_seconds=86400), history, horizon_steps=2,
                         quantiles=spec.quantiles)

    run_model(hourly, spec, fit, "snaive")
    span = origins(len(hourly), spec)
    assert len(seen) == len(range(0, len(span), 24))
    for (start, end, n), origin in zip(seen, span[::24], strict=True):
        assert n == 100 and end == hourly.start + origin * 3600 and start == end - 100 * 3600


@pytest.mark.parametrize(("text", "seconds"), [("1h30m", 5400), ("21d", 1814400), ("2w1d", 1296000)])
def test_durations_have_the_config_grammar(text: str, seconds: int) -> None:
    assert eval_cli.parse_duration(text, flag="--history") == seconds


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    return parser.parse_args([*argv, "--horizon", "2h", "--no-progress"])


@pytest.fixture(scope="module")
def trace_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "synthetic_1h.csv"
    write_trace(path, synthetic_trace(days=10, step_seconds=3600, seed=2))
    return path


def test_history_flag_defaults_to_21_days(trace_csv: Path) -> None:
    assert eval_cli.build_spec(_args("--trace", str(trace_csv)), 3600).history_steps == 21 * 24
    assert eval_cli.build_spec(_args("--trace", str(trace_csv), "--history", "3d"),
                               3600).history_steps == 72


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--history", "lots", "--history 'lots'"),
    ("--history", "30m", "--history 30m: must be at least"),
    ("--eval-span", "forever", "--eval-span 'forever'"),
    ("--eval-span", "1h", "--eval-span 1h: must be at least --horizon (2h)"),
    ("--max-origins", "-1", "--max-origins -1: must be >= 1, or 0"),
])
def test_bad_scoring_flags_exit_2_naming_the_flag(trace_csv: Path, flag: str, value: str, message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cli.run(_args("--trace", str(trace_csv), flag, value)) == 2
    assert message in capsys.readouterr().err


def test_the_scored_span_defaults_to_90_days_and_all_lifts_it(trace_csv: Path, tmp_path: Path) -> None:
    assert eval_cli.build_spec(_args("--trace", str(trace_csv)), 3600).max_eval_steps == 90 * 24
    assert eval_cli.build_spec(_args("--trace", str(trace_csv), "--eval-span", "all"), 3600).max_eval_steps is None
    out = tmp_path / "r.json"
    assert eval_cli.run(_args("--trace", str(trace_csv), "--eval-span", "1d", "--json", str(out))) == 0
    report = json.loads(out.read_text())
    assert report["origins"] == 24 - 1 and report["eval_span_s"] == 23 * 3600  # the last origin keeps its horizon
    assert report["origin_every_s"] == 3600
    assert eval_cli.run(_args("--trace", str(trace_csv), "--max-origins", "5", "--json", str(out))) == 0
    report = json.loads(out.read_text())
    assert report["origins"] <= 5 and report["origin_every_s"] > 3600

