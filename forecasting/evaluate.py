"""Rolling-origin forecast evaluation: the numbers behind ``prewarm forecast-eval``.

Over the last 25 % of a trace (at most ``max_eval_steps``; the command line's default is 90 days,
so a long trace costs what 90 days do), one origin per step (at most ``max_origins``: then every
k-th step), every model forecasts ``horizon`` ahead from what it could have seen: it is refitted
every ``refit_every_steps`` steps on the ``history_steps`` before the origin (the scaler's
``defaults.history``, 21 days) and follows the level with ``update`` in between - what the
scaler does, with less frequent refits. Scored at the horizon step (docs/FORECASTING.md):

- MASE: mean absolute error over that of seasonal naive (``season``) on the same points;
- sMAPE in percent (0..200), pinball loss and empirical coverage of each quantile;
- median fit seconds; ``selected``: the model ``fit_auto`` picked most often.

Actuals that are missing or collection gaps (:mod:`forecasting.cleaning`) are not scored:
they are not demand. Their count is reported as ``excluded_points``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecasting.auto import fit_auto
from forecasting.base import Forecaster
from forecasting.calibration import pinball
from forecasting.cleaning import GapPolicy, mask_collection_gaps
from forecasting.fitted import FittedForecaster
from forecasting.models import candidate_models
from forecasting.naive import SeasonalNaive
from forecasting.selection import fit_model, holdout_steps
from forecasting.types import FloatArray, Series

AUTO = "auto"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ModelRun:
    """One model's forecasts at the horizon step, one per origin."""

    name: str
    mean: FloatArray
    quantiles: dict[float, FloatArray]
    fit_seconds: list[float]
    picks: list[str] = field(default_factory=list)
    """Model names fit_auto chose at each refit (auto only)."""


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    """What to evaluate; validated here so the CLI can name the bad flag."""

    horizon_steps: int
    season_seconds: int = 86400
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9, 0.95)
    refit_every_steps: int = 36
    eval_fraction: float = 0.25
    max_origins: int | None = None
    """At most this many origins are scored (None: every step): a span with more is scored every
    k-th step, the smallest k that keeps within it. A 1-minute trace has 30x the origins of a
    30-minute one over the same days, each an update and a forecast of every model."""
    max_eval_steps: int | None = None
    """The scored span is the last ``eval_fraction`` of the trace, at most this many steps (None:
    no cap). Each origin is an update and a forecast of every model, and every refit interval a
    fit of each: without a cap a long trace costs in proportion."""
    seasons_seconds: tuple[int, ...] = (86400, 604800)
    history_steps: int | None = None
    """A fit sees at most this many steps before its origin (None: all of them). Like the
    scaler's ``defaults.history``; it also keeps a fit's cost from growing with the trace."""

    def __post_init__(self) -> None:
        if self.horizon_steps < 1:
            raise ValueError(f"horizon = {self.horizon_steps} steps, must be >= 1 step")
        if self.history_steps is not None and self.history_steps < 1:
            raise ValueError(f"history = {self.history_steps} steps, must be >= 1 step")
        if self.refit_every_steps < 1:
            raise ValueError(f"refit every {self.refit_every_steps} steps, must be >= 1")
        if self.max_origins is not None and self.max_origins < 1:
            raise ValueError(f"at most {self.max_origins} origins, must be >= 1")
        if self.max_eval_steps is not None and self.max_eval_steps < self.horizon_steps:
            raise ValueError(f"scored span = {self.max_eval_steps} steps, must be >= the horizon "
                             f"({self.horizon_steps} steps)")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval fraction = {self.eval_fraction}, must be in (0, 1)")
        if not self.quantiles or any(not 0.0 < q < 1.0 for q in self.quantiles):
            raise ValueError(f"quantiles = {self.quantiles}, each must be in (0, 1)")


def origins(n: int, spec: EvalSpec) -> range:
    """Forecast origins (index of the first forecast step) over the last ``eval_fraction``, at
    most the last ``max_eval_steps``; every step, or every k-th to keep to ``max_origins`` (the
    last origin is always scored)."""
    scored = int(n * spec.eval_fraction)
    first = n - (scored if spec.max_eval_steps is None else min(scored, spec.max_eval_steps))
    last = n - spec.horizon_steps
    every = 1 if spec.max_origins is None else max(1, math.ceil((last - first + 1) / spec.max_origins))
    return range(last - (last - first) // every * every, last + 1, every)


def fit_start(origin: int, spec: EvalSpec) -> int:
    """First step a fit at ``origin`` sees."""
    return 0 if spec.history_steps is None else max(0, origin - spec.history_steps)


def model_specs(series: Series, spec: EvalSpec) -> list[Forecaster]:
    """Every model eligible on the history at the first origin, the seasonal baseline first.

    A trace shorter than one season (+ a holdout) before the first origin cannot have a seasonal
    baseline: MASE is then against plain naive (the last value), named in the report.
    """
    first = origins(len(series), spec).start
    seen = first - fit_start(first, spec)
    train = seen - holdout_steps(seen, step_seconds=series.step_seconds,
                                 horizon_steps=spec.horizon_steps, min_train=1)
    baseline = SeasonalNaive(season_seconds=spec.season_seconds)
    if baseline.min_obs(step_seconds=series.step_seconds) > train:
        baseline = SeasonalNaive(season_seconds=series.step_seconds)
    specs = candidate_models(spec.seasons_seconds, step_seconds=series.step_seconds,
                             train_steps=train)
    return [baseline, *[s for s in specs if s != baseline]]


def run_model(
    series: Series,
    spec: EvalSpec,
    fit: Callable[[Series], FittedForecaster],
    name: str,
    progress: Progress | None = None,
) -> ModelRun:
    """Refit every ``refit_every_steps`` steps, ``update`` + ``forecast`` at every origin."""
    h, step = spec.horizon_steps, series.step_seconds
    span = origins(len(series), spec)
    mean = np.full(len(span), np.nan)
    paths = {q: np.full(len(span), np.nan) for q in spec.quantiles}
    seconds: list[float] = []
    picks: list[str] = []
    fitted: FittedForecaster | None = None
    fitted_at = span.start
    for j, origin in enumerate(span):
        if fitted is None or origin - fitted_at >= spec.refit_every_steps:
            fitted_at = origin
            started = time.perf_counter()
            fitted = fit(_slice(series, fit_start(origin, spec), origin))
            seconds.append(time.perf_counter() - started)
            picks.append(fitted.name)
        assert fitted is not None
        fitted = fitted.update(_slice(series, int((fitted.end - series.start) / step), origin))
        forecast = fitted.forecast(h)
        mean[j] = forecast.mean[-1]
        for q in spec.quantiles:
            paths[q][j] = forecast.quantile(q)[-1]
        if progress:
            progress(1)
    return ModelRun(name, mean, paths, seconds, picks)


def _slice(series: Series, start: int, stop: int) -> Series:
    t0 = series.start + start * series.step_seconds
    return Series(t0, series.step_seconds, series.values[start:stop])


def actuals(series: Series, spec: EvalSpec) -> tuple[FloatArray, int]:
    """Value at the horizon step of every origin, NaN where missing or a collection gap."""
    clean = mask_collection_gaps(series.values, step_seconds=series.step_seconds,
                                 policy=GapPolicy()).values
    idx = np.array(origins(len(series), spec)) + spec.horizon_steps - 1
    y = clean[idx]
    return y, int(np.sum(np.isnan(y)))


def metrics(run: ModelRun, y: FloatArray, baseline: ModelRun) -> dict[str, Any]:
    """The per-model JSON block of docs/FORECASTING.md."""
    ok = ~np.isnan(y) & ~np.isnan(run.mean) & ~np.isnan(baseline.mean)
    err = np.abs(y[ok] - run.mean[ok])
    base = np.abs(y[ok] - baseline.mean[ok])
    denom = np.abs(y[ok]) + np.abs(run.mean[ok])
    smape = np.where(denom > 0, 2 * err / np.where(denom > 0, denom, 1), 0.0)
    return {
        "mase": _finite(float(err.mean() / base.mean())) if base.size and base.mean() > 0
        else None,
        "smape": _finite(float(100 * smape.mean())) if smape.size else None,
        "pinball": {str(q): _finite(pinball(y[ok], p[ok], q)) for q, p in run.quantiles.items()},
        "coverage": {str(q): _finite(float(np.mean(y[ok] <= p[ok]))) if ok.any() else None
                     for q, p in run.quantiles.items()},
        "fit_seconds_median": statistics.median(run.fit_seconds) if run.fit_seconds else None,
        "scored_points": int(ok.sum()),
    }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def evaluate(
    series: Series, spec: EvalSpec, *, trace: str = "", progress: Progress | None = None,
    models: Sequence[Forecaster] | None = None,
) -> tuple[dict[str, Any], dict[str, ModelRun]]:
    """Evaluate every model and ``fit_auto``: the JSON dict and the raw runs (for plots)."""
    if spec.horizon_steps > len(series) // 8:
        raise ValueError(f"horizon of {spec.horizon_steps} steps is too long for a trace of "
                         f"{len(series)} steps (at most 1/8 of it)")
    specs = list(models) if models is not None else model_specs(series, spec)
    runs: dict[str, ModelRun] = {}
    for s in specs:
        runs[s.name] = run_model(series, spec, _fitter(s, spec), s.name, progress)
    runs[AUTO] = run_model(series, spec, _auto(spec), AUTO, progress)
    y, excluded = actuals(series, spec)
    baseline = runs[specs[0].name]
    picks = Counter(runs[AUTO].picks)
    scored = origins(len(series), spec)
    report = {
        "trace": trace,
        "horizon_s": spec.horizon_steps * series.step_seconds,
        "step_s": series.step_seconds,
        "season_s": spec.season_seconds,
        "origins": len(scored),
        "eval_span_s": len(scored) * scored.step * series.step_seconds,
        "origin_every_s": scored.step * series.step_seconds,
        "refit_every_s": spec.refit_every_steps * series.step_seconds,
        "history_s": None if spec.history_steps is None
        else spec.history_steps * series.step_seconds,
        "excluded_points": excluded,
        "baseline": specs[0].name,
        "models": {name: metrics(r, y, baseline) for name, r in runs.items()},
        "selected": picks.most_common(1)[0][0],
        "selected_counts": dict(picks),
    }
    return report, runs


def _fitter(model: Forecaster, spec: EvalSpec) -> Callable[[Series], FittedForecaster]:
    def fit(history: Series) -> FittedForecaster:
        return fit_model(model, history, horizon_steps=spec.horizon_steps,
                         quantiles=spec.quantiles)
    return fit


def _auto(spec: EvalSpec) -> Callable[[Series], FittedForecaster]:
    def fit(history: Series) -> FittedForecaster:
        return fit_auto(history, horizon_steps=spec.horizon_steps, quantiles=spec.quantiles,
                        seasons_seconds=spec.seasons_seconds)
    return fit
