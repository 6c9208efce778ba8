"""The reconcile loop: read metrics, update forecasts, decide, publish a snapshot.

Only this module reads the clock (``now = clock.now()``) and passes it down; everything it calls
in ``scaler.core`` and ``forecasting`` is a pure function of data and ``now``. Source reads run in
a thread, fits in a process pool, so the event loop (gRPC handlers) never waits on them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import replace
from functools import partial

import numpy as np

from forecasting.fitted import FittedForecaster
from forecasting.types import Forecast
from scaler.core.clock import Clock
from scaler.core.coldstart import configured_cold_start, lead_seconds
from scaler.core.config import ModelSettings, Overrides, Settings
from scaler.core.decision import DecisionInputs, decide, finish_all, for_target, recalled
from scaler.core.errors import SourceError
from scaler.core.excursion import excursion
from scaler.core.fleet import ClusterView, Published
from scaler.core.forecasts import catch_up, demotion_note, fit_horizon_steps, fit_job, forecast_steps
from scaler.core.model import ColdStart, Decision, Observation
from scaler.core.ports import MetricSource
from scaler.core.slo import (
    BUDGET_HOURS,
    ONE_OFF_PEAK,
    RETUNE_SECONDS,
    ReplaySpec,
    TunerState,
    describe,
    due,
    lead_steps,
    measured,
    retune,
)
from scaler.fitpool import is_broken
from scaler.history import History
from scaler.runtime import EngineStats, ModelRuntime, Track, on_grid, record_base
from scaler.snapshot import FitInfo, Snapshot, SnapshotHolder, replace_settings

log = logging.getLogger("prewarm.engine")

LOOP_SLICE_SECONDS = 0.01
"""Longest stretch a refresh decides models without yielding to the event loop (a waiting
callback may sit behind two such stretches, so 10 ms keeps stalls well under 50 ms)."""
MAX_TRIGGERS_PER_MODEL = 16
"""Distinct trigger-metadata overrides finished per model (ScaledObjects per model, in practice 1)."""


class Engine:
    def __init__(
        self,
        clock: Clock,
        settings: Settings,
        source: MetricSource,
        holder: SnapshotHolder,
        *,
        fit_executor: Executor | None,
        cluster: Published[ClusterView] | None = None,
    ) -> None:
        """``cluster``: the view the Kubernetes edge publishes (None: no Kubernetes, so the
        configured cold starts and no pool knowledge)."""
        self.clock = clock
        self.settings = settings
        self.source = source
        self.holder = holder
        self.fit_executor = fit_executor
        self.cluster = cluster
        self.triggers: dict[str, set[Overrides]] = {}
        """Per model, the trigger-metadata overrides ScaledObjects asked with (finished at every
        refresh, so GetMetrics only looks the answer up)."""
        self.stats = EngineStats()
        self.models: dict[str, ModelRuntime] = {}
        self._refresh_lock = asyncio.Lock()
        self._refit_lock = asyncio.Lock()
        self.apply_settings(settings)

    # --- configuration -------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """Swap settings; keep what was learned for models that stay, start fresh for new ones."""
        step = int(settings.defaults.step)
        span = settings.defaults.history
        kept: dict[str, ModelRuntime] = {}
        for m in settings.models:
            old = self.models.get(m.name)
            if old is not None and old.history.step == step:
                kept[m.name] = old
            else:
                kept[m.name] = ModelRuntime(History(step_seconds=step, span_seconds=span))
        self.models = kept
        self.settings = settings

    # --- jobs ----------------------------------------------------------------------------------

    async def backfill(self) -> None:
        """Load fit history for models that have none yet (start, or a model added by reload)."""
        now = self.clock.now()
        d = self.settings.defaults
        for m in self.settings.models:
            rt = self.models.get(m.name)
            if rt is None or rt.backfilled:
                continue
            try:
                series = await asyncio.to_thread(
                    self.source.history, m, start=now - d.history, end=now,
                    step_seconds=int(d.step))
            except SourceError as exc:
                self._count_source_error(exc.reason)
                log.warning("history for %s unavailable (%s); will retry", m.name, exc)
                continue
            rt.history.backfill(series)
            # A restart must not forget the peak a running prewarm would still hold.
            rt.state = recalled(rt.state, rt.history.completed(now), m.capacityPerReplica, now=now)
            await self._recall_on_time(m, rt, now)
            rt.backfilled = True
            log.info("history for %s: %d steps of %ds", m.name, len(series), series.step_seconds)

    async def _recall_on_time(self, m: ModelSettings, rt: ModelRuntime, now: float) -> None:
        """A (re)started tuner's week of measured on-time shares, read back from the source:
        without it a rolling update forgets a spent error budget (docs/SLO.md). Best effort: a
        failed read leaves the record empty, which only makes the tuner calmer for a while."""
        if m.policy.slo is None or rt.tuner.recent:
            return
        try:
            points = await asyncio.to_thread(
                self.source.on_time_history, m, start=now - BUDGET_HOURS * RETUNE_SECONDS, end=now,
                step_seconds=int(RETUNE_SECONDS))
        except SourceError as exc:
            self._count_source_error(exc.reason)
            log.warning("measured on-time shares of %s unavailable (%s); the SLO tuner starts a new week",
                        m.name, exc)
            return
        entries = (measured(share, requests) for _, share, requests in points)
        recent = tuple(entry for entry in entries if entry is not None)[-BUDGET_HOURS:]
        rt.tuner = replace(rt.tuner, recent=recent)
        if recent:
            log.info("SLO tuner of %s: %d hourly on-time shares recalled", m.name, len(recent))

    async def refresh(self) -> Snapshot:
        """One refresh: observe all models in one batched read, decide each, publish."""
        async with self._refresh_lock:
            started = time.perf_counter()
            now = self.clock.now()
            observations = await self._observe(self.settings, now)
            # Decide under the settings current *now*: a reload during the read may have removed
            # a model (it is not decided) or added one (no observation yet: it holds).
            settings, models = self.settings, self.models
            decisions: dict[str, Decision] = {}
            forecasts: dict[str, Forecast] = {}
            colds: dict[str, ColdStart] = {}
            by_target: dict[tuple[str, float], Decision] = {}
            slice_started = time.perf_counter()
            for m in settings.models:
                decision, forecast, cold, targets = self._decide_model(
                    m, models[m.name], observations.get(m.name), now)
                decisions[m.name] = decision
                by_target.update(((m.name, t), d) for t, d in targets.items())
                colds[m.name] = cold
                if forecast is not None:
                    forecasts[m.name] = forecast
                if time.perf_counter() - slice_started > LOOP_SLICE_SECONDS:
                    await asyncio.sleep(0)  # let gRPC handlers run: thousands of models take a while
                    slice_started = time.perf_counter()
            tuners = {m.name: models[m.name].tuner for m in settings.models if m.policy.slo is not None}
            snapshot = Snapshot(
                at=now, generation=self.holder.current.generation + 1, settings=settings,
                decisions=decisions, observations=observations, forecasts=forecasts,
                fits={k: rt.fit for k, rt in self.models.items() if rt.fit is not None},
                cold_starts=colds,
                margins={name: tuner.margin for name, tuner in tuners.items()},
                budgets={name: tuner.budget for name, tuner in tuners.items()},
                forecast_for_now={k: rt.forecast_for_now for k, rt in self.models.items()
                                  if rt.forecast_for_now is not None},
                answers=finish_all(settings, decisions, self.triggers, by_target),
                ready_replicas=self.cluster.current.ready if self.cluster is not None else {},
            )
            if self.settings is not settings:  # reloaded while deciding: serve the new config
                snapshot = replace_settings(snapshot, self.settings)
            await self.holder.publish(snapshot)
            self.stats.refreshes += 1
            self.stats.last_refresh_seconds = time.perf_counter() - started
        return snapshot

    def finish(self, model: str, overrides: Overrides) -> Snapshot:
        """Register a ScaledObject's overrides and publish its finished answer now.

        Called by the KEDA edge the first time it meets these overrides; from then on every
        refresh finishes them with the rest, before publishing.
        """
        asked = self.triggers.setdefault(model, set())
        if len(asked) >= MAX_TRIGGERS_PER_MODEL and overrides not in asked:
            asked.pop()  # bounded: a client cycling through values cannot grow this forever
        asked.add(overrides)
        snap = self.holder.current
        if model not in snap.decisions:
            return snap
        answers = {**snap.answers, **finish_all(snap.settings, snap.decisions, {model: [overrides]})}
        snap = replace(snap, answers=answers, generation=snap.generation + 1)
        self.holder.replace_nowait(snap)
        return snap

    async def refit(self) -> None:
        """Refit every model's forecaster on its completed history, in the process pool."""
        if self.fit_executor is None:
            return
        async with self._refit_lock:
            started = time.perf_counter()
            now = self.clock.now()
            loop = asyncio.get_running_loop()
            jobs = {}
            for m in self.settings.models:
                rt = self.models.get(m.name)
                series = rt.history.completed(now) if rt else None
                if rt is None or series is None or not m.policy.forecast:
                    continue
                if np.isfinite(series.values).sum() < 3:
                    continue
                seasons = tuple(int(s) for s in m.policy.seasonality)
                jobs[m.name] = partial(fit_job, series, self._horizon_steps(m, now), seasons)
            futures = {name: loop.run_in_executor(self.fit_executor, job) for name, job in jobs.items()}
            died = [name for name, future in futures.items() if not await self._store_fit(name, future, now)]
            # Fits whose worker died (not whose data failed) run once more, on the healed pool.
            for name in died:
                await self._store_fit(name, loop.run_in_executor(self.fit_executor, jobs[name]), now)
            await self.retune(now)
            self.stats.refits += 1
            self.stats.last_refit_seconds = time.perf_counter() - started

    async def _store_fit(self, name: str, job: asyncio.Future[FittedForecaster], fitted_at: float) -> bool:
        """Store one fit; False when its worker died (the caller may retry it)."""
        try:
            fitted = await job
        except Exception as exc:  # a fit must never take the daemon down
            self.stats.fit_errors += 1
            log.error("fit for %s failed; keeping the previous forecaster", name, exc_info=exc)
            return not is_broken(exc)
        rt = self.models.get(name)
        model = self.settings.model(name)
        if rt is None or model is None:
            return True
        skill = fitted.skill
        rt.fitted = fitted
        rt.fit = FitInfo(
            model_name=fitted.name, skill=skill, reason=fitted.reason, fitted_at=fitted_at,
            fit_seconds=fitted.diagnostics.fit_seconds,
            demoted=demotion_note(fitted.name, skill, model.policy.maxSkill) is not None,
        )
        log.info("fitted %s: %s (skill %s)", name, rt.fit.model_name,
                 "n/a" if skill is None else f"{skill:.2f}")
        return True

    async def retune(self, now: float | None = None) -> None:
        """Re-choose the SLO margin of every model that is due, in the fit pool (a replay of a
        week of steps for a few hundred candidates: too long for the event loop at 1000s of models)."""
        if self.fit_executor is None:
            return
        now = self.clock.now() if now is None else now
        for m in self.settings.models:
            rt = self.models.get(m.name)
            if rt is None or m.policy.slo is None:
                continue
            rt.tuner = await self._retune(m, rt, rt.tuner, rt.bases, m.policy.slo.onTime, now)
            for target, track in rt.targets.items():
                track.tuner = await self._retune(m, rt, track.tuner, track.bases, target, now)

    async def _retune(self, m: ModelSettings, rt: ModelRuntime, tuner: TunerState, bases: History | None,
                      target: float, now: float) -> TunerState:
        if not due(tuner, now):
            return tuner
        replay = self._replay_inputs(m, rt, bases, now)
        if replay is None:
            return tuner
        demand, base, spec = replay
        # A share not read again since the last retune is missing data to the tuner: fed again,
        # it would count twice in the week's error budget.
        fresh = rt.on_time_at > tuner.tuned_at
        try:
            tuned = await asyncio.get_running_loop().run_in_executor(
                self.fit_executor, partial(retune, tuner, now=now, demand=demand, base=base, spec=spec,
                                           target=target,
                                           on_time=rt.on_time if fresh and rt.on_time_requests != 0 else None,
                                           step_seconds=rt.history.step,
                                           requests=rt.on_time_requests if fresh else None))
        except Exception:  # keep the last margin: a failed tune must never lower it
            self.stats.fit_errors += 1
            log.exception("SLO margin tuning for %s (target %g) failed; keeping the last margin", m.name, target)
            return tuner
        _log_tuning(m.name, target, tuner, tuned, capacity=m.capacityPerReplica)
        return tuned

    def _excursion(self, rt: ModelRuntime, now: float, cold: ColdStart) -> float:
        """How far demand may stray above its level now (``scaler.core.excursion``), over the
        lead the tuner's replay uses (node wait counted, as in ``_replay_inputs``)."""
        recent = rt.history.completed(now)
        if recent is None:
            return 0.0
        lead = lead_seconds(cold, pool_has_spare=None,
                            decision_delay_seconds=self.settings.defaults.pollingInterval)
        step = recent.step_seconds
        return excursion(recent.values, step_seconds=step, lead_steps=lead_steps(lead, step))

    def _replay_inputs(
        self, m: ModelSettings, rt: ModelRuntime, bases: History | None, now: float
    ) -> tuple[np.ndarray, np.ndarray, ReplaySpec] | None:
        """Demand and decision bases on one step grid, and the Deployment the replay models."""
        demand = rt.history.completed(now)
        if demand is None:
            return None
        base = on_grid(demand.start, demand.step_seconds, len(demand), bases, now)
        lead = lead_seconds(self._cold_start(m, now), pool_has_spare=None,
                            decision_delay_seconds=self.settings.defaults.pollingInterval)
        return demand.values, base, ReplaySpec.for_lead(
            lead, step_seconds=demand.step_seconds, capacity=m.capacityPerReplica,
            stabilization_seconds=m.policy.stabilization_seconds)

    # --- pieces --------------------------------------------------------------------------------

    async def _observe(self, settings: Settings, now: float) -> Mapping[str, Observation]:
        try:
            observations = await asyncio.to_thread(self.source.observe, settings.models, now=now)
        except SourceError as exc:
            self._count_source_error(exc.reason)
            log.warning("metrics source failed (%s): holding decisions", exc)
            return {}
        except Exception:
            self._count_source_error("internal")
            log.exception("metrics source raised unexpectedly: holding decisions")
            return {}
        self.stats.last_source_success = now
        return observations

    def _count_source_error(self, reason: str) -> None:
        self.stats.source_errors[reason] = self.stats.source_errors.get(reason, 0) + 1

    def _decide_model(
        self, m: ModelSettings, rt: ModelRuntime, obs: Observation | None, now: float
    ) -> tuple[Decision, Forecast | None, ColdStart, dict[float, Decision]]:
        """The model's decision, and one per other on-time target its ScaledObjects asked for."""
        demand = obs.demand if obs is not None else None
        if demand is not None and math.isfinite(demand):
            rt.history.add(now, demand)
        cold = self._cold_start(m, now)
        # Node provisioning counts only when no GPU is free for a new replica (None: unknown).
        spare = self.cluster.current.spare.get(m.name) if self.cluster is not None else None
        lead = lead_seconds(cold, pool_has_spare=spare,
                            decision_delay_seconds=self.settings.defaults.pollingInterval)
        forecast, note = self._forecast(m, rt, now, lead + cold.node_provisioning_seconds)
        self._track_forecast_for_now(m, rt, forecast, now, lead)
        slo = m.policy.slo is not None
        if slo:
            signals = obs.signals if obs is not None else {}
            signal = signals.get("slo_on_time_ratio")
            if signal is not None and math.isfinite(signal):
                rt.on_time, rt.on_time_requests, rt.on_time_at = signal, signals.get("slo_requests"), now
            elif signals.get("slo_requests") == 0:  # read, and nothing finished: an idle window
                rt.on_time_requests, rt.on_time_at = 0.0, now
        inputs = DecisionInputs(demand=demand, forecast=forecast, lead_seconds=lead,
                                forecast_note=note,
                                node_lead_seconds=cold.node_provisioning_seconds,
                                margin=rt.tuner.margin if slo else None,
                                on_time=rt.on_time if slo else None,
                                excursion=self._excursion(rt, now, cold) if slo else 0.0,
                                sampled_at=obs.sampled_at if obs is not None else None)
        decision, rt.state = decide(inputs, m, rt.state, now=now)
        if not slo:
            return decision, forecast, cold, {}
        step, span = rt.history.step, self.settings.defaults.history
        rt.bases = record_base(rt.bases, decision, now=now, step=step, span=span)
        targets: dict[float, Decision] = {}
        for target in self._asked_targets(m):
            # A new target's tuner starts from the model's week of measured shares (the same
            # measurement, judged against its own target).
            track = rt.targets.setdefault(target, Track(tuner=TunerState(recent=rt.tuner.recent)))
            targets[target], track.state = decide(replace(inputs, margin=track.tuner.margin),
                                                  for_target(m, target), track.state, now=now)
            track.bases = record_base(track.bases, targets[target], now=now, step=step, span=span)
        return decision, forecast, cold, targets

    def _asked_targets(self, m: ModelSettings) -> set[float]:
        """On-time targets asked by ScaledObjects of ``m`` other than its config's."""
        own = m.policy.slo.onTime if m.policy.slo else None
        return {o.sloOnTime for o in self.triggers.get(m.name, ()) if o.sloOnTime not in (None, own)}

    def _cold_start(self, m: ModelSettings, now: float) -> ColdStart:
        """The learned cold start the Kubernetes edge published, else the configured one."""
        learned = (self.cluster.current.cold_starts.get(m.name)
                   if self.cluster is not None and m.policy.coldStart.learn else None)
        return learned if learned is not None else configured_cold_start(m.policy.coldStart)

    def _forecast(
        self, m: ModelSettings, rt: ModelRuntime, now: float, horizon_seconds: float
    ) -> tuple[Forecast | None, str]:
        if not m.policy.forecast:
            return None, "forecast disabled"
        if rt.fitted is None or rt.fit is None:
            return None, "no forecaster fitted yet"
        demoted = demotion_note(rt.fit.model_name, rt.fit.skill, m.policy.maxSkill)
        if demoted is not None:
            return None, demoted
        fitted = rt.fitted
        completed = rt.history.completed(now)
        if completed is not None and completed.end > fitted.end:
            fitted = catch_up(fitted, completed)
            rt.fitted = fitted
        h = forecast_steps(origin=fitted.end, now=now, horizon_seconds=horizon_seconds,
                           step_seconds=fitted.step_seconds)
        try:
            return fitted.forecast(h), ""
        except Exception:
            log.exception("forecast for %s failed", m.name)
            return None, "forecast failed"

    def _track_forecast_for_now(
        self, m: ModelSettings, rt: ModelRuntime, forecast: Forecast | None, now: float,
        lead: float,
    ) -> None:
        """Remember the forecast for now + lead, so at that time it can be shown beside actual."""
        while rt.pending_for_now and rt.pending_for_now[0][0] <= now:
            rt.forecast_for_now = rt.pending_for_now.popleft()[1]
        if forecast is None:
            return
        index = int((now + lead - forecast.origin) // forecast.step_seconds)
        if 0 <= index < forecast.h:
            value = float(forecast.quantile(m.policy.scale_quantile)[index])
            rt.pending_for_now.append((now + lead, value))

    def _horizon_steps(self, m: ModelSettings, now: float) -> int:
        """Fit for the model's own lead (learned cold start, node wait counted): that is the
        horizon the decision reads, so it is the one forecasters are chosen and calibrated on."""
        lead = lead_seconds(self._cold_start(m, now), pool_has_spare=None,
                            decision_delay_seconds=self.settings.defaults.pollingInterval)
        return fit_horizon_steps(lead, self.settings.defaults.step)


def _log_tuning(model: str, target: float, before: TunerState, after: TunerState, *,
                capacity: float) -> None:
    """Tell the operator when the SLO tuner changes its mind: the week's budget spent or back,
    a lone burst let go, a new margin (docs/SLO.md)."""
    who = f"SLO tuner of {model} (target {target:g})"
    if after.spent != before.spent:
        log.info("%s: %s", who, "the week's error budget is spent: re-choosing the margin hourly"
                 if after.spent else "the week's error budget recovered: back to the daily choice")
    if after.one_off and not before.one_off:
        log.info("%s: a lone burst far above anything replayed spent the week's budget; the rest "
                 "of the week is within it, so the margin stays on the daily choice", who)
    if after.outlier_capped and not before.outlier_capped:
        log.info("%s: the week's bursts recur and one went far above the rest; the hourly choice "
                 "replays that one capped at %gx the highest demand outside it", who, ONE_OFF_PEAK)
    m = after.margin
    if m != before.margin and m.expected is not None and m.aim is not None:
        log.info("%s: new margin %s (its replay of the recent history gives %.4f on time; aim %.4f)",
                 who, describe(m.terms(capacity)), m.expected, m.aim)
