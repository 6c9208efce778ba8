"""``fit_auto``: pick the model that forecasts THIS series best at the lead time, or say why not.

Candidates depend on how much history there is (a daily season needs more than a day of
training data, weekly more than two weeks); each is backtested on the series' own recent
history (:mod:`forecasting.selection`) and the one with the lowest cross-fitted pinball loss at
the horizon wins. Ties go to the simpler model, seasonal naive first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from forecasting.base import DEFAULT_QUANTILES, Forecaster
from forecasting.cleaning import GapPolicy
from forecasting.fitted import FittedModel
from forecasting.naive import SeasonalNaive, baseline_spec
from forecasting.selection import (
    Backtest,
    _diagnostics,
    backtest,
    error_floor,
    finish,
    holdout_steps,
    mase,
    prepare,
    score,
)
from forecasting.types import FloatArray, Series


def default_candidates(
    seasons_seconds: Sequence[int], *, step_seconds: int, train_steps: int
) -> list[Forecaster]:
    """Models worth trying on ``train_steps`` of history: simplest first (they win ties)."""
    from forecasting.models import candidate_models

    return candidate_models(seasons_seconds, step_seconds=step_seconds, train_steps=train_steps)


def fit_auto(
    series: Series,
    *,
    horizon_steps: int,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    seasons_seconds: Sequence[int] = (86400, 604800),
    candidates: Sequence[Forecaster] | None = None,
    policy: GapPolicy | None = None,
    refit: bool = False,
) -> FittedModel:
    """Fit every eligible model, keep the best at ``horizon_steps``, calibrated and scored.

    Parameters
    ----------
    series : history (14-28 days at 1-minute steps in the scaler; NaN = missing).
    horizon_steps : lead time the forecast is judged at, in steps (>= 1).
    quantiles : levels the forecast must provide.
    seasons_seconds : seasonalities to consider (daily, weekly).
    candidates : override the candidate list (tests, benchmarks).
    policy : when (near-)zeros are collection gaps.
    refit : refit the winner on all history (True), or keep the parameters fitted before the
        holdout and walk the holdout with ``update`` (False, default: one statsmodels fit fewer,
        ~35 % cheaper; on ServeGen the 30-minute MASE was within +-0.02 either way).

    Raises
    ------
    InsufficientDataError
        The series has no observation at all.
    """
    started = time.perf_counter()
    _validate(horizon_steps, quantiles, seasons_seconds)
    policy = policy or GapPolicy()
    mask = prepare(series, policy=policy)
    values, online = mask.values, policy if mask.enabled else None
    step = series.step_seconds
    baseline, hold, specs = _plan(len(series), step, horizon_steps, seasons_seconds, candidates)
    floor = error_floor(values)
    tests, failures = _backtests(specs, values, hold=hold, step=step, horizon=horizon_steps)
    if not tests:  # every candidate failed: the baseline cannot
        tests = [backtest(baseline, values, hold=hold, step_seconds=step, horizon=horizon_steps)]
    scores = [score(bt, levels=quantiles, floor=floor) for bt in tests]
    best = min(range(len(tests)), key=lambda i: scores[i].loss)  # first (simplest) wins ties
    base_bt = _baseline_backtest(baseline, tests, values, hold, step, horizon_steps)
    model, fitted = finish(tests[best], values, step_seconds=step, end=series.end,
                           levels=quantiles, power=scores[best].power, policy=online, refit=refit)
    seasonal_baseline = base_bt is not None and baseline.season_seconds > step
    skill = mase(tests[best], base_bt) if base_bt is not None and seasonal_baseline else None
    losses = {bt.spec.name: sc.loss for bt, sc in zip(tests, scores, strict=True)}
    diagnostics = _diagnostics(values, series, mask.masked, fitted, started, losses,
                               scores[best].coverage)
    diagnostics = replace(diagnostics, warnings=diagnostics.warnings + failures)
    reason = _reason(tests[best], skill, baseline, hold, step, len(tests))
    return replace(model, skill=skill, reason=reason, diagnostics=diagnostics)


def _backtests(
    specs: Sequence[Forecaster], values: FloatArray, *, hold: int, step: int, horizon: int
) -> tuple[list[Backtest], tuple[str, ...]]:
    """Backtest every candidate; one that raises is left out and recorded, never fatal.

    A worker process must always return a model: statsmodels can fail on odd data (singular
    initialisation, optimiser errors), and seasonal naive is always there to fall back on.
    """
    tests: list[Backtest] = []
    failures: list[str] = []
    for spec in specs:
        try:
            tests.append(backtest(spec, values, hold=hold, step_seconds=step, horizon=horizon))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            failures.append(f"{spec.name} failed and was skipped: {type(exc).__name__}: {exc}")
    return tests, tuple(failures)


def _plan(
    n: int,
    step: int,
    horizon_steps: int,
    seasons_seconds: Sequence[int],
    candidates: Sequence[Forecaster] | None,
) -> tuple[SeasonalNaive, int, list[Forecaster]]:
    """Baseline, holdout length and the candidates the history can support.

    Shorter than one season + a holdout: no seasonal model can be judged, the baseline becomes
    plain naive (last value). A single sample: nothing to backtest at all.
    """
    baseline = baseline_spec(seasons_seconds, step)
    hold = holdout_steps(n, step_seconds=step, horizon_steps=horizon_steps,
                         min_train=baseline.min_obs(step_seconds=step))
    if hold < 1:
        baseline = SeasonalNaive(season_seconds=step)
        hold = holdout_steps(n, step_seconds=step, horizon_steps=horizon_steps, min_train=1)
    if hold < 1:
        return baseline, 0, [baseline]
    specs = list(candidates) if candidates is not None else default_candidates(
        seasons_seconds, step_seconds=step, train_steps=n - hold)
    specs = [s for s in specs if s.min_obs(step_seconds=step) <= n - hold]
    return baseline, hold, specs or [baseline]


def _validate(horizon_steps: int, quantiles: Sequence[float], seasons: Sequence[int]) -> None:
    if horizon_steps < 1:
        raise ValueError(f"horizon_steps = {horizon_steps}, must be >= 1")
    bad = [q for q in quantiles if not 0.0 < q < 1.0]
    if bad or not quantiles:
        raise ValueError(f"quantiles = {list(quantiles)}, each must be in (0, 1)")
    if any(s <= 0 for s in seasons):
        raise ValueError(f"seasons_seconds = {list(seasons)}, each must be > 0")


def _baseline_backtest(
    baseline: SeasonalNaive,
    tests: list[Backtest],
    values: object,
    hold: int,
    step: int,
    horizon: int,
) -> Backtest | None:
    for bt in tests:
        if bt.spec == baseline:
            return bt
    if hold < 1:
        return None
    return backtest(baseline, np.asarray(values), hold=hold, step_seconds=step, horizon=horizon)


def _reason(
    bt: Backtest,
    skill: float | None,
    baseline: SeasonalNaive,
    hold: int,
    step: int,
    n_candidates: int,
) -> str:
    days = hold * step / 86400
    plural = "s" if n_candidates != 1 else ""
    head = (f"{bt.spec.name}: lowest pinball loss at the horizon of {n_candidates} "
            f"candidate{plural} on the last {days:.2g} d (rolling origin)")
    if skill is None:
        if baseline.season_seconds <= step:
            return head + "; skill unknown: history too short for a seasonal baseline"
        return head + f"; skill unknown: {baseline.name} makes no error on the holdout"
    verdict = "better than" if skill < 1.0 else "NOT better than"
    return head + f"; MASE {skill:.2f}: {verdict} {baseline.name}"
