"""The forecasts ``prewarm serve`` would have had, minute by minute, from the past only.

Like the engine: ``fit_auto`` on the last ``history`` minutes of completed history (serve's
``defaults.history``, 21 days; refitted every ``refit_every`` minutes), ``fitted.update(new
minutes)`` before every decision, ``forecast(h)`` with ``h`` covering the lead (+ node
provisioning), demotion to reactive when the skill is >= ``maxSkill``. The fit at minute ``T``
sees minutes ``[T - history, T)``; the forecast at minute ``t`` has seen up to ``t`` - never later.
The bound also keeps a fit's cost flat along a long trace instead of growing with it.

Forecasts do not depend on the policy's knob (every quantile is kept), so one tape serves every
sweep point. Fits are independent of each other, so they run in a process pool, and are cached
per (trace content, fit minute, horizon) for the life of the process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass

from forecasting.fitted import FittedForecaster
from forecasting.types import Forecast, Series
from scaler.backtest.scenario import MINUTE, Scenario
from scaler.core.config import Defaults
from scaler.core.forecasts import QUANTILES, demotion_note, fit_job, forecast_steps

HISTORY = round(Defaults().history / MINUTE)
"""Minutes a fit sees by default: serve's ``defaults.history`` (21 days)."""

FitKey = tuple[str, int, int, int, tuple[float, ...], tuple[int, ...]]
_CACHE: dict[FitKey, FittedForecaster] = {}
Progress = Callable[[int], None]


@dataclass(frozen=True)
class TapeSpec:
    """When to fit and how far to forecast; minutes unless named otherwise."""

    horizon_seconds: float
    """Forecast reach past now: lead + node provisioning (what the engine asks for)."""
    fit_horizon_steps: int
    """``horizon_steps`` given to ``fit_auto`` (the engine's lead in steps)."""
    refit_every: int
    first_fit: int
    """Minute of the first fit; before it the policy is reactive ("no forecaster fitted yet")."""
    every: int = 1
    """Decision every this many minutes (forecasts are made only there)."""
    seasons: tuple[int, ...] = (86400, 604800)
    max_skill: float = 1.0
    history: int = HISTORY
    """A fit sees at most this many minutes before it, like serve's ``defaults.history``."""

    def fit_minutes(self, n: int) -> list[int]:
        """Minutes at which a fit is made: first_fit, first_fit + refit_every, ... (< n)."""
        first = max(1, self.first_fit)
        return list(range(first, n, max(1, self.refit_every)))

    def fit_history(self, scenario: Scenario, t: int) -> Series:
        """What the fit at minute ``t`` sees: the last ``history`` minutes before ``t``."""
        return scenario.history(t, start=t - max(1, self.history))


class ForecastTape:
    """Forecast (or the reason there is none) at every decision minute from ``first_fit`` on."""

    def __init__(self, scenario: Scenario, spec: TapeSpec, fits: dict[int, FittedForecaster]) -> None:
        self.spec = spec
        self.fits = fits
        self.forecasts: dict[int, Forecast | None] = {}
        self.notes: dict[int, str] = {}
        self._build(scenario)

    def at(self, t: int) -> tuple[Forecast | None, str]:
        if t in self.forecasts:
            return self.forecasts[t], self.notes.get(t, "")
        return None, "no forecaster fitted yet"

    def _build(self, scenario: Scenario) -> None:
        spec, n = self.spec, scenario.minutes
        values = scenario.history(n).values
        fitted: FittedForecaster | None = None
        h = forecast_steps(origin=0.0, now=0.0, horizon_seconds=spec.horizon_seconds, step_seconds=MINUTE)
        for t in range(max(1, spec.first_fit), n):
            if t in self.fits:
                fitted = self.fits[t]
            if fitted is None or t % spec.every:
                continue
            seen = round((fitted.end - scenario.start) / MINUTE)
            if seen < t:  # the minutes completed since the fit or the last update
                fitted = fitted.update(Series(fitted.end, MINUTE, values[seen:t]))
            demoted = demotion_note(fitted.name, fitted.skill, spec.max_skill)
            if demoted is not None:
                self.forecasts[t] = None
                self.notes[t] = demoted
                continue
            self.forecasts[t] = fitted.forecast(h)

    def demoted_share(self) -> float:
        """Share of decision minutes with a fit where the forecast was demoted to reactive."""
        if not self.forecasts:
            return 0.0
        return sum(f is None for f in self.forecasts.values()) / len(self.forecasts)

    def models(self) -> dict[str, int]:
        """How often each forecasting model was selected by the refits."""
        out: dict[str, int] = {}
        for f in self.fits.values():
            out[f.name] = out.get(f.name, 0) + 1
        return out


def fit_all(scenario: Scenario, spec: TapeSpec, *, jobs: int = 1,
            progress: Progress | None = None) -> dict[int, FittedForecaster]:
    """Every fit of the schedule (cached), ``jobs`` processes at a time."""
    minutes = spec.fit_minutes(scenario.minutes)
    keys = {t: (scenario.key, t, spec.history, spec.fit_horizon_steps, QUANTILES, spec.seasons)
            for t in minutes}
    todo = [t for t in minutes if keys[t] not in _CACHE]
    for t, fitted in _run_fits(scenario, spec, todo, jobs):
        _CACHE[keys[t]] = fitted
        if progress:
            progress(1)
    if progress and len(todo) < len(minutes):
        progress(len(minutes) - len(todo))
    return {t: _CACHE[keys[t]] for t in minutes}


def _run_fits(scenario: Scenario, spec: TapeSpec, minutes: list[int],
              jobs: int) -> Iterator[tuple[int, FittedForecaster]]:
    if jobs <= 1 or len(minutes) <= 1:
        for t in minutes:
            yield t, fit_job(spec.fit_history(scenario, t), spec.fit_horizon_steps, spec.seasons)
        return
    workers = min(jobs, len(minutes))
    with _pool(workers) as pool:
        # A few fits in flight, not all: each carries its history (21 days of minutes, 240 kB),
        # so queueing a long trace's hundreds of fits at once would hold them all in memory.
        pending: deque[tuple[int, Future[FittedForecaster]]] = deque()
        for t in minutes:
            pending.append((t, pool.submit(fit_job, spec.fit_history(scenario, t),
                                           spec.fit_horizon_steps, spec.seasons)))
            if len(pending) > 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        for done, future in pending:
            yield done, future.result()


def _pool(workers: int) -> Executor:
    # One BLAS thread per worker: two workers on two busy cores otherwise spin against each
    # other (benchmarks/forecast_throughput.py measured 2-5x slower fits).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def clear_cache() -> None:
    """Forget every cached fit (tests)."""
    _CACHE.clear()
