"""The forecasts ``prewarm serve`` would have had, minute by minute, from the past only.

Like the engine: ``fit_auto`` on the last ``history`` minutes of completed history (serve's
``defaults.history``, 21 days; refitted every ``refit_every`` minutes), ``fitted.update(new
minutes)`` before every decision, ``forecast(h)`` with ``h`` covering the lead (+ node
provisioning), demotion to reactive when the skill is >= ``maxSkill``. The fit at minute ``T``
sees minutes ``[T - history, T)``; the forecast at minute ``t`` has seen up to ``t`` - never later.
The bound also keeps a fit's cost flat along a long trace instead of growing with it.

Forecasts do not depend on the policy's knob (every quantile is kept), so one tape serves every
sweep point. The tape is made of segments, one per fit: the fit and the forecasts of the decision
minutes up to the next fit. Segments are independent of each other, so a process pool makes them
while the caller already simulates (the baselines need no forecasts, and a policy that does reads
the tape as it fills: :meth:`ForecastTape.at` waits for the segment it needs). Fits are cached per
(trace content, fit minute, horizon) for the life of the process. Forecasts cross between
processes packed as arrays (:class:`Packed`), and a complete tape can be copied to a worker
(:meth:`ForecastTape.copy`: the hindsight sweep's runs share two cores).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import numpy.typing as npt

from forecasting.fitted import FittedForecaster, FittedModel
from forecasting.types import Forecast, Series
from scaler.backtest.scenario import MINUTE, Scenario
from scaler.core.config import Defaults
from scaler.core.forecasts import QUANTILES, demotion_note, fit_job, forecast_steps
from scaler.fitpool import spawn_pool, stop_pool

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


@dataclass(frozen=True)
class Packed:
    """The forecasts of many decision minutes as a few arrays: how they cross between processes.

    A 215-day tape is 300,000 small Forecast objects; pickled one by one they were 246 MB and
    23 s of CPU each way, as arrays they are one buffer per field. Every forecast on a tape has
    the same horizon (the spec's) and quantile levels (``QUANTILES``); a batch that does not is
    refused rather than padded.
    """

    minutes: npt.NDArray[np.int64]
    origins: npt.NDArray[np.float64]
    step_seconds: int
    levels: tuple[float, ...]
    paths: npt.NDArray[np.float64]
    """(minutes, 1 + levels, h): the mean, then each level's path."""
    names: tuple[str, ...]
    model: npt.NDArray[np.int64]
    """Each forecast's model, an index into ``names``."""

    @classmethod
    def of(cls, forecasts: Mapping[int, Forecast]) -> Packed:
        minutes = sorted(forecasts)
        if not minutes:
            return cls(np.zeros(0, np.int64), np.zeros(0), 60, (), np.zeros((0, 1, 0)), (), np.zeros(0, np.int64))
        first = forecasts[minutes[0]]
        levels = tuple(first.quantiles)
        names: dict[str, int] = {}
        for t in minutes:
            f = forecasts[t]
            if f.h != first.h or tuple(f.quantiles) != levels or f.step_seconds != first.step_seconds:
                raise ValueError(f"forecast at minute {t} differs in shape from the one at minute {minutes[0]}")
            names.setdefault(f.model, len(names))
        paths = np.stack([np.stack([forecasts[t].mean, *forecasts[t].quantiles.values()]) for t in minutes])
        return cls(np.asarray(minutes, np.int64), np.asarray([forecasts[t].origin for t in minutes], np.float64),
                   first.step_seconds, levels, paths.astype(np.float64, copy=False), tuple(names),
                   np.asarray([names[forecasts[t].model] for t in minutes], np.int64))

    @classmethod
    def join(cls, packs: list[Packed]) -> Packed:
        """One batch of several (in order); empty ones are left out."""
        packs = [p for p in packs if len(p.minutes)]
        if len(packs) <= 1:
            return packs[0] if packs else cls.of({})
        names = tuple(dict.fromkeys(n for p in packs for n in p.names))
        first = packs[0]
        if any(p.levels != first.levels or p.step_seconds != first.step_seconds
               or p.paths.shape[1:] != first.paths.shape[1:] for p in packs):
            raise ValueError("segments with different forecast shapes cannot be joined")
        model = [np.asarray([names.index(n) for n in p.names], np.int64)[p.model] for p in packs]
        return cls(np.concatenate([p.minutes for p in packs]), np.concatenate([p.origins for p in packs]),
                   first.step_seconds, first.levels, np.concatenate([p.paths for p in packs]), names,
                   np.concatenate(model))

    def unpack(self) -> dict[int, Forecast]:
        """The forecasts again (their arrays are views of ``paths``)."""
        origins, models = self.origins.tolist(), self.model.tolist()
        return {t: Forecast(origin=origins[i], step_seconds=self.step_seconds, mean=self.paths[i, 0],
                            quantiles=dict(zip(self.levels, self.paths[i, 1:], strict=True)),
                            model=self.names[models[i]])
                for i, t in enumerate(self.minutes.tolist())}


@dataclass(frozen=True)
class Segment:
    """One fit and the forecasts made from it: decision minutes ``[start, stop)``."""

    start: int
    stop: int
    fitted: FittedForecaster
    packed: Packed
    """The forecasts made (see :attr:`forecasts`)."""
    notes: dict[int, str]
    """Why there is no forecast at a minute (demoted)."""

    @property
    def forecasts(self) -> dict[int, Forecast | None]:
        """Forecast at each decision minute; None where it was demoted (the reason in ``notes``)."""
        return _unpacked(self.packed, self.notes)


def segment_job(spec: TapeSpec, start: int, stop: int, *, seen: Series,
                fitted: FittedForecaster | None = None, history: Series | None = None) -> Segment:
    """Runs in a worker process: fit on ``history`` (or take ``fitted``, the fit at ``start``),
    then forecast at every decision minute ``t`` in ``[start, stop)`` after feeding the fit the
    minutes ``[start, t)`` of ``seen`` - the minutes completed since the fit, and nothing later."""
    if fitted is None:
        assert history is not None
        fitted = fit_job(history, spec.fit_horizon_steps, spec.seasons)
    h = forecast_steps(origin=0.0, now=0.0, horizon_seconds=spec.horizon_seconds, step_seconds=MINUTE)
    if isinstance(fitted, FittedModel):
        return Segment(start, stop, fitted, *_rolled(fitted, spec, start, stop, seen=seen, h=h))
    forecasts: dict[int, Forecast | None] = {}
    notes: dict[int, str] = {}
    current, known = fitted, start  # ``current`` has seen the minutes before ``known``
    for t in range(start, stop):
        if t % spec.every:
            continue
        if known < t:
            current = current.update(Series(current.end, MINUTE, seen.values[known - start:t - start]))
            known = t
        demoted = demotion_note(current.name, current.skill, spec.max_skill)
        if demoted is not None:
            forecasts[t], notes[t] = None, demoted
        else:
            forecasts[t] = current.forecast(h)
    return Segment(start, stop, fitted, Packed.of({t: f for t, f in forecasts.items() if f is not None}),
                   notes)


def _rolled(fitted: FittedModel, spec: TapeSpec, start: int, stop: int, *, seen: Series,
            h: int) -> tuple[Packed, dict[int, str]]:
    """:func:`segment_job`'s forecasts in one pass of the filter (:meth:`FittedModel.rolling`),
    packed: the same floats as updating and forecasting minute by minute, about 20x cheaper."""
    minutes = [t for t in range(start, stop) if t % spec.every == 0]
    demoted = demotion_note(fitted.name, fitted.skill, spec.max_skill)
    if not minutes or demoted is not None:
        return Packed.of({}), dict.fromkeys(minutes, demoted or "")
    first, last = minutes[0] - start, minutes[-1] - start
    current = fitted.update(Series(fitted.end, MINUTE, seen.values[:first])) if first else fitted
    # One step past the last decision minute (never fed: only the row made before it is read).
    new = np.append(seen.values[first:last], np.nan)
    origins, means, paths = current.rolling(new, h, every=spec.every)
    packed = Packed(np.asarray(minutes, np.int64), origins, current.step_seconds,
                    tuple(sorted(current.calibration.levels)),
                    np.concatenate([means[:, None, :], paths], axis=1), (current.name,),
                    np.zeros(len(minutes), np.int64))
    return packed, {}


class ForecastTape:
    """Forecast (or the reason there is none) at every decision minute from ``first_fit`` on.

    Filled in time order, segment by segment: by a pool of ``jobs`` worker processes fed from a
    thread (``jobs`` > 1), or in this process as :meth:`at` asks for later minutes.
    """

    def __init__(self, scenario: Scenario, spec: TapeSpec, *, jobs: int = 1,
                 progress: Progress | None = None) -> None:
        self.spec = spec
        self.fits: dict[int, FittedForecaster] = {}
        self.forecasts: dict[int, Forecast | None] = {}
        self.notes: dict[int, str] = {}
        self._packs: list[Packed] = []
        self._failed: BaseException | None = None
        self.seconds = 0.0
        """Wall seconds from the start until the last segment was on the tape."""
        self._started = time.perf_counter()
        self._until = self._end = scenario.minutes
        minutes = spec.fit_minutes(scenario.minutes)
        if minutes:
            self._until = minutes[0]  # minutes before this are on the tape (no forecast)
        pool = new_worker_pool(jobs) if jobs > 1 and len(minutes) > 1 else None
        segments = _segments(scenario, spec, minutes, pool=pool, in_flight=2 * jobs + 1, progress=progress)
        self._feed = _Feed(segments, pool) if pool is not None else None
        self._segments = segments

    def at(self, t: int) -> tuple[Forecast | None, str]:
        if self._failed is not None:
            raise self._failed
        self._fill(t)
        return _look_up(self.forecasts, self.notes, t)

    def fail(self, exc: BaseException) -> None:
        """Work beside this tape failed (a worker died): stop fitting, and raise ``exc`` to the
        next reader, so the run ends now rather than after everything that reads the tape."""
        self._failed = exc
        self.close()

    def filled(self) -> bool:
        """Every segment is made: :meth:`complete` will not wait for a fit."""
        if self._until >= self._end:
            return True
        return self._feed is not None and self._feed.finished and self._feed.error is None

    def copy(self) -> TapeCopy:
        """The complete tape, to read in another process."""
        self.complete()
        return TapeCopy(Packed.join(self._packs), dict(self.notes))

    def complete(self) -> ForecastTape:
        """Wait for every segment (the report reads the whole tape)."""
        self._fill(self._end - 1)
        if self._feed is not None and self._feed.finished_at is not None:
            self.seconds = self._feed.finished_at - self._started
        return self

    def close(self) -> None:
        """Stop making segments now (the caller gave up; the tape stays as far as it got): the
        fits in flight are killed, not waited for."""
        if self._feed is not None:
            self._feed.close()

    def _fill(self, t: int) -> None:
        while self._until <= t < self._end:
            segment = self._feed.take() if self._feed is not None else next(self._segments, None)
            if segment is None:
                break
            self.fits[segment.start] = segment.fitted
            self.forecasts.update(segment.forecasts)
            self.notes.update(segment.notes)
            self._packs.append(segment.packed)
            self._until = segment.stop
            if segment.stop >= self._end:
                self.seconds = time.perf_counter() - self._started

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


@dataclass(frozen=True)
class TapeCopy:
    """A complete tape in another process: pickled as its packed arrays, unpacked on first read."""

    packed: Packed
    notes: dict[int, str]

    @cached_property
    def forecasts(self) -> dict[int, Forecast | None]:
        return _unpacked(self.packed, self.notes)

    def at(self, t: int) -> tuple[Forecast | None, str]:
        return _look_up(self.forecasts, self.notes, t)


def _unpacked(packed: Packed, notes: Mapping[int, str]) -> dict[int, Forecast | None]:
    """Forecasts by minute, in minute order, with None where ``notes`` says why there is none."""
    out: dict[int, Forecast | None] = dict.fromkeys(notes)
    out.update(packed.unpack())
    return dict(sorted(out.items()))


def _look_up(forecasts: Mapping[int, Forecast | None], notes: Mapping[int, str],
             t: int) -> tuple[Forecast | None, str]:
    if t in forecasts:
        return forecasts[t], notes.get(t, "")
    return None, "no forecaster fitted yet"


class _Feed:
    """A thread that moves segments from the pool onto a queue as they finish, so the workers
    keep fitting while the caller simulates something else."""

    def __init__(self, segments: Iterator[Segment], pool: ProcessPoolExecutor) -> None:
        self.ready: deque[Segment] = deque()
        self.done = threading.Condition()
        self.finished = False
        self.finished_at: float | None = None
        """When the last segment arrived (perf_counter), None before."""
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self._segments = segments
        self._pool = pool
        threading.Thread(target=self._run, name="forecast-tape", daemon=True).start()

    def _run(self) -> None:
        try:
            for segment in self._segments:
                with self.done:
                    self.ready.append(segment)
                    self.done.notify_all()
                if self.stop.is_set():
                    break
        except BaseException as exc:  # handed to the reader, which raises it
            self.error = exc
        finally:
            if self.stop.is_set() or self.error is not None:
                stop_pool(self._pool, timeout=10.0)
            else:
                self._pool.shutdown(wait=True)  # all done: the workers are idle
            with self.done:
                self.finished, self.finished_at = True, time.perf_counter()
                self.done.notify_all()

    def close(self) -> None:
        """Stop now, from the reader's thread: this thread may be waiting for a fit in flight."""
        self.stop.set()
        stop_pool(self._pool, timeout=10.0)  # that wait then ends with an error nobody reads

    def take(self) -> Segment | None:
        """The next segment in time order (waits for it); None after the last."""
        with self.done:
            self.done.wait_for(lambda: bool(self.ready) or self.finished)
            if self.ready:
                return self.ready.popleft()
        if self.error is not None:
            raise self.error
        return None


def _segments(scenario: Scenario, spec: TapeSpec, minutes: list[int], *, pool: Executor | None,
              in_flight: int = 1, progress: Progress | None) -> Iterator[Segment]:
    """Every segment of the schedule in time order; fits come from the cache where it has them."""
    stops = [*minutes[1:], scenario.minutes]
    values = scenario.history(scenario.minutes).values

    def job(start: int, stop: int) -> Callable[[], Segment]:
        seen = Series(scenario.start + start * MINUTE, MINUTE, values[start:max(start, stop - 1)])
        cached = _CACHE.get(_key(scenario, spec, start))
        history = None if cached is not None else spec.fit_history(scenario, start)
        return partial(segment_job, spec, start, stop, seen=seen, fitted=cached, history=history)

    for segment in _run(map(job, minutes, stops), pool, in_flight):
        _CACHE[_key(scenario, spec, segment.start)] = segment.fitted
        if progress:
            progress(1)
        yield segment


def _key(scenario: Scenario, spec: TapeSpec, t: int) -> FitKey:
    return (scenario.key, t, spec.history, spec.fit_horizon_steps, QUANTILES, spec.seasons)


def _run(jobs: Iterator[Callable[[], Segment]], pool: Executor | None, in_flight: int) -> Iterator[Segment]:
    """Each job's result in order: here, or in ``pool`` with up to ``in_flight`` jobs submitted."""
    if pool is None:
        for job in jobs:
            yield job()
        return
    # A few jobs in flight, not all: each carries its history (21 days of minutes, 240 kB), so
    # queueing a long trace's hundreds of fits at once would hold them all in memory.
    pending: deque[Future[Segment]] = deque()
    for job in jobs:
        pending.append(pool.submit(job))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def new_worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` fresh (spawned) processes, one BLAS thread each."""
    # One BLAS thread per worker: two workers on two busy cores otherwise spin against each
    # other (benchmarks/forecast_throughput.py measured 2-5x slower fits).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # Workers that die with the backtest: a backtest killed outright (SIGKILL, the OOM killer)
    # left them running (still there two minutes later, measured). And at a lower CPU priority:
    # the self-tuned run here is the longest chain of work, one step after another; the workers
    # fill the tape ahead of it and run the baselines beside it, and take all cores when it waits.
    # A worker OOM-killed while it sends a result fails its work instead of hanging it.
    return spawn_pool(workers)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Executor]:
    """:func:`new_worker_pool` for a ``with``: leaving normally waits for the work submitted;
    leaving on an error or Ctrl-C kills the workers mid-job (nobody will read their results,
    and a baseline sweep takes seconds)."""
    pool = new_worker_pool(workers)
    try:
        yield pool
    except BaseException:
        stop_pool(pool, timeout=10.0)
        raise
    pool.shutdown(wait=True)


def clear_cache() -> None:
    """Forget every cached fit (tests)."""
    _CACHE.clear()
