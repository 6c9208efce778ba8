"""Fit, backtest, calibrate and choose: the shared path from a series to a fitted model.

For every candidate: fit on the history minus a recent holdout, then walk the holdout with
``update`` exactly as the scaler would between refits, forecasting ``horizon_steps`` ahead
from each origin (rolling origin, fixed parameters). Those out-of-sample errors give

- the selection score: pinball loss at the horizon step, cross-fitted (quantiles calibrated on
  one half of the origins, scored on the other) so calibration cannot flatter itself;
- the conformal quantiles of the fitted model (:mod:`forecasting.calibration`);
- the skill: MASE against seasonal naive at the horizon step.

The winner keeps its parameters and is walked through the holdout (or, with ``refit=True``,
is refitted on all the history), keeping the holdout's calibration.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from forecasting.base import DEFAULT_QUANTILES, Forecaster, StateFit
from forecasting.calibration import calibrate, pinball
from forecasting.cleaning import GapMask, GapPolicy, mask_collection_gaps
from forecasting.fitted import FittedModel
from forecasting.smoothing import SmoothingState, rolling_forecasts
from forecasting.types import FitDiagnostics, FloatArray, Series

MAX_HOLDOUT_SECONDS = 2 * 86400
"""Recent history held out for selection and calibration: enough origins, still recent."""
MAX_ORIGINS = 600
"""Origins scored per backtest (strided beyond this): bounds the cost at 1-minute steps."""
POWERS = (0.0, 1.0)
"""Error scalings tried for the conformal bands: absolute, relative to the forecast."""
CLIP_SIGMAS = 4.0
"""Robust standard deviations of the one-step error one observation may correct (burst guard)."""
SHIFT_SIGMAS = 6.0
"""Errors beyond this many robust standard deviations, 3 steps in a row, are a level shift."""


class InsufficientDataError(ValueError):
    """The series cannot support the requested model (too short, or no observation at all)."""


@dataclass(frozen=True)
class Backtest:
    """Rolling-origin forecasts of one candidate over the holdout, parameters fitted before it."""

    spec: Forecaster
    fit: StateFit
    predicted: FloatArray
    """(origins, horizon) forecasts, one row per origin."""
    actual: FloatArray
    """(origins, horizon) what happened, NaN = missing/gap (not scored)."""
    seconds: float
    hold: int
    """Holdout length, steps."""
    stride: int
    """Steps between scored origins."""

    def horizon_errors(self) -> FloatArray:
        return self.actual[:, -1] - self.predicted[:, -1]


@dataclass(frozen=True)
class Score:
    """Cross-fitted quality of a backtest for one error scaling."""

    loss: float
    """Mean pinball loss over the quantile levels at the horizon step (series units)."""
    power: float
    coverage: dict[float, float]


def prepare(series: Series, *, policy: GapPolicy) -> GapMask:
    """Cleaned values (collection gaps -> NaN); validates the series."""
    if not np.isfinite(series.values).any():
        raise InsufficientDataError(f"series of {len(series)} samples has no observation")
    if (series.values[np.isfinite(series.values)] < 0).any():
        raise ValueError("series has negative values: demand must be >= 0")
    return mask_collection_gaps(series.values, step_seconds=series.step_seconds, policy=policy)


def holdout_steps(n: int, *, step_seconds: int, horizon_steps: int, min_train: int) -> int:
    """Length of the recent holdout: a quarter of the history, at most 2 days, >= 8 horizons."""
    want = max(n // 4, 8 * horizon_steps)
    cap = max(MAX_HOLDOUT_SECONDS // step_seconds, 8 * horizon_steps)
    return max(0, min(want, cap, n - min_train))


def backtest(
    spec: Forecaster, values: FloatArray, *, hold: int, step_seconds: int, horizon: int
) -> Backtest:
    """Fit ``spec`` on ``values[:-hold]`` and forecast through ``values[-hold:]``."""
    started = time.perf_counter()
    train, test = values[: values.shape[0] - hold], values[values.shape[0] - hold :]
    fitted = fit_state_recorded(spec, train, step_seconds=step_seconds)
    stride = max(1, math.ceil(hold / MAX_ORIGINS))
    _, predicted = rolling_forecasts(fitted.state, test, horizon=horizon, stride=stride)
    padded = np.concatenate([test, np.full(horizon, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, horizon)[: test.shape[0] : stride]
    return Backtest(spec, fitted, predicted, np.array(windows),
                    time.perf_counter() - started, hold, stride)


def fit_state_recorded(spec: Forecaster, values: FloatArray, *, step_seconds: int) -> StateFit:
    """``spec.fit_state`` with every warning recorded instead of raised or printed.

    ``catch_warnings`` is process-local and not thread-safe: fits run in worker processes.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = spec.fit_state(values, step_seconds=step_seconds)
    messages = tuple(f"{w.category.__name__}: {w.message}" for w in caught)
    return replace(fitted, warnings=tuple(dict.fromkeys(fitted.warnings + messages)))


def score(bt: Backtest, *, levels: Sequence[float], floor: float) -> Score:
    """Best cross-fitted pinball loss at the horizon step over the error scalings in POWERS."""
    scores = [_cross_fit(bt, levels=levels, floor=floor, power=p) for p in POWERS]
    return min(scores, key=lambda s: s.loss)


def _cross_fit(bt: Backtest, *, levels: Sequence[float], floor: float, power: float) -> Score:
    """Calibrate on one half of the origins, score the horizon step on the other, and swap."""
    half = bt.actual.shape[0] // 2
    folds = ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half)))
    losses: list[float] = []
    hits: dict[float, list[float]] = {level: [] for level in levels}
    for cal, test in folds:
        # Only the horizon step is scored: calibrate that column alone, so ``bands`` applies its
        # offsets to every origin's horizon forecast (a vector over origins, not over steps).
        c = calibrate(bt.actual[cal, -1:], bt.predicted[cal, -1:], levels=levels, power=power,
                      floor=floor)
        _, paths = c.bands(bt.predicted[test, -1])
        actual = bt.actual[test, -1]
        ok = ~np.isnan(actual)
        for level in levels:
            losses.append(pinball(actual, paths[level], level))
            if ok.any():
                hits[level].append(float(np.mean(actual[ok] <= paths[level][ok])))
    finite = [x for x in losses if not math.isnan(x)]
    loss = float(np.mean(finite)) if finite else math.inf
    coverage = {lv: float(np.mean(h)) if h else math.nan for lv, h in hits.items()}
    return Score(loss, power, coverage)


def mase(bt: Backtest, baseline: Backtest) -> float | None:
    """Mean absolute horizon error relative to the baseline's on the same origins; None if 0/0."""
    err, base = np.abs(bt.horizon_errors()), np.abs(baseline.horizon_errors())
    ok = ~np.isnan(err) & ~np.isnan(base)
    if not ok.any() or float(np.mean(base[ok])) == 0.0:
        return None
    return float(np.mean(err[ok]) / np.mean(base[ok]))


def error_clip(bt: Backtest, *, sigmas: float | None = None) -> float:
    """Largest one-step error an observation may correct the level by: ``CLIP_SIGMAS`` robust
    standard deviations (1.4826 x median absolute one-step error on the holdout). One burst then
    moves the level by a bounded amount; a real level shift still gets through over a few steps.
    """
    sigmas = CLIP_SIGMAS if sigmas is None else sigmas
    errors = np.abs(bt.actual[:, 0] - bt.predicted[:, 0]) if bt.actual.size else np.zeros(0)
    errors = errors[~np.isnan(errors)]
    if not math.isfinite(sigmas) or errors.size < 10:
        return math.inf
    scale = 1.4826 * float(np.median(errors))
    return sigmas * scale if scale > 0 else math.inf


def error_floor(values: FloatArray) -> float:
    """Scale floor for relative errors: 10 % of the mean level (1 for an all-zero series)."""
    level = float(np.nanmean(values))
    return 0.1 * level if level > 0 else 1.0


def finish(
    bt: Backtest,
    values: FloatArray,
    *,
    step_seconds: int,
    end: float,
    levels: Sequence[float],
    power: float,
    policy: GapPolicy | None,
    refit: bool,
) -> tuple[FittedModel, StateFit]:
    """The fitted model: refit on all values (or walk the holdout), holdout calibration attached.

    The calibration errors come from re-running the holdout with the burst guard and level-shift
    jumps switched on, exactly as ``update`` will run between refits.
    """
    floor = error_floor(values)
    guarded = with_online_guards(bt.fit.state, bt, policy=policy, step_seconds=step_seconds)
    test = values[values.shape[0] - bt.hold :]
    _, predicted = rolling_forecasts(guarded, test, horizon=bt.predicted.shape[1],
                                     stride=bt.stride)
    calibration = calibrate(bt.actual, predicted, levels=levels, power=power, floor=floor)
    if refit:
        fitted = fit_state_recorded(bt.spec, values, step_seconds=step_seconds)
    else:
        fitted = replace(bt.fit, state=rolling_forecasts(bt.fit.state, test, horizon=0)[0])
    state = with_online_guards(fitted.state, bt, policy=policy, step_seconds=step_seconds)
    model = FittedModel(bt.spec.name, state, calibration, end, step_seconds)
    return model, fitted


def with_online_guards(
    state: SmoothingState, bt: Backtest, *, policy: GapPolicy | None, step_seconds: int
) -> SmoothingState:
    """Switch on what protects ``update``: gap zeros, burst clipping, level-shift jumps.

    Clipping and jumps only for models with a level (``alpha > 0``): seasonal naive stays the
    pure baseline that MASE is measured against. ``policy`` None: an on/off series whose lows are
    demand, no gap masking.
    """
    has_level = state.alpha > 0.0
    return replace(
        state,
        error_clip=error_clip(bt) if has_level else math.inf,
        shift_error=error_clip(bt, sigmas=SHIFT_SIGMAS) if has_level else math.inf,
        gap_min_level=policy.min_level if policy else math.inf,
        gap_fraction=policy.low_fraction if policy else 0.0,
        max_gap_steps=policy.max_run_steps(step_seconds) if policy else 0,
    )


def fit_model(
    spec: Forecaster,
    series: Series,
    *,
    horizon_steps: int,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    policy: GapPolicy | None = None,
) -> FittedModel:
    """Fit one model with conformal quantiles from its own holdout backtest (no selection)."""
    started = time.perf_counter()
    policy = policy or GapPolicy()
    mask = prepare(series, policy=policy)
    values, online = mask.values, policy if mask.enabled else None
    step = series.step_seconds
    min_train = spec.min_obs(step_seconds=step)
    hold = holdout_steps(len(series), step_seconds=step, horizon_steps=horizon_steps,
                         min_train=min_train)
    if hold < 1:
        raise InsufficientDataError(
            f"{spec.name} needs more than {min_train} steps of history, got {len(series)}"
        )
    bt = backtest(spec, values, hold=hold, step_seconds=step, horizon=horizon_steps)
    floor = error_floor(values)
    sc = score(bt, levels=quantiles, floor=floor)
    model, fitted = finish(bt, values, step_seconds=step, end=series.end, levels=quantiles,
                           power=sc.power, policy=online, refit=True)
    diagnostics = _diagnostics(values, series, mask.masked, fitted, started,
                               {spec.name: sc.loss}, sc.coverage)
    return replace(model, reason=f"{spec.name} as requested", diagnostics=diagnostics)


def _diagnostics(
    values: FloatArray,
    series: Series,
    gap_zeros: int,
    fitted: StateFit,
    started: float,
    candidates: dict[str, float],
    coverage: dict[float, float],
) -> FitDiagnostics:
    n_obs = int(np.sum(~np.isnan(values)))
    return FitDiagnostics(
        n_obs=n_obs,
        n_missing=len(series) - n_obs,
        n_gap_zeros=gap_zeros,
        fit_seconds=time.perf_counter() - started,
        fit_step_seconds=fitted.fit_step_seconds or series.step_seconds,
        warnings=fitted.warnings,
        candidates=candidates,
        coverage=coverage,
    )
