"""The decision core: replicas from demand, forecast and cold start. Pure functions of data and ``now``.

The chain, each step a small function with its own table test::

    reactive floor  = ceil(demand now / capacity)              (bursts are still caught)
    forecast need   = ceil(max upper quantile over [now, now + lead] / capacity)
    need            = max(reactive floor, forecast need)        (0 when nothing is active)
    stabilized      = max(need over the scale-down window)     (scale down only after both stayed low)
    replicas        = clamp(stabilized + standby, min, max)

E.g. capacity 16, demand 20 -> floor 2; forecast p90 peak 70 within the 12-minute lead -> 5;
standby 1 -> 6. Ten minutes later demand 5, forecast 30: need 2, but the window still holds 5,
so 6 stay until the window has passed.

Missing data never lowers the count: without a fresh demand sample the last valid decision is
held until ``staleAfter``, then the decision turns invalid (GetMetrics fails so KEDA's fallback
applies) - never zero. A missing forecast holds the last forecast need for as long.

**With an SLO** (``slo: {onTime: 0.99}``) the user gives no quantile: the forecast is read at its
median and a self-tuned margin (``scaler.core.slo``) goes on top, never below demand now::

    base            = max(demand now, forecast p50 peak over [now, now + lead])
    spell           = max - mean of demand over the last 3 hours, or around this time of day
                      on the last 7 days, the second largest day's (bursts come in spells, and
                      at times of day where two days had one)
    forecast need   = ceil(max(floor x base, min(factor x base + extra + spread x spell, cap)) / capacity)
                      (floor: the factor, at most 1.2 - the cap limits what is anticipated
                      beyond the expected level, not the room over the level itself)
    stabilized      = max(need over the margin's hold: half a lead or a lead, tuned;
                      at least scaleDown.stabilization when that is set)

``factor``, ``extra``, ``spread``, ``cap`` and the hold are chosen as the cheapest that would have
kept ``onTime`` plus a reserve of the error budget on the model's own replayed two weeks (each
replayed day with the caps and standbys the days before it gave, not the ones read off it): once a
day while the measured on-time share keeps the week within its budget, hourly and with a larger
reserve once the week has spent 70 % of it (``scaler.core.slo``, docs/SLO.md). An explicit
``quantile`` pins the level the base is read at instead of the median; ``standbyReplicas`` still adds on top.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from forecasting.types import Forecast, Series
from scaler.core.config import ModelSettings, Overrides, Settings
from scaler.core.model import Decision, Reason
from scaler.core.record import record
from scaler.core.replicas import replicas_for
from scaler.core.slo import Margin


@record
class DecisionInputs:
    demand: float | None
    """Current demand (model's demand unit); None when the source has no fresh sample."""
    forecast: Forecast | None
    """Demand forecast; None when none is usable (not fitted yet, disabled or demoted)."""
    lead_seconds: float
    """Cold start p90 (+ node provisioning when needed) + decision delay."""
    forecast_note: str = ""
    """Why ``forecast`` is None, for the decision's message."""
    node_lead_seconds: float = 0.0
    """Node provisioning p90 of the model's pool: how much further ahead nodes are pre-warmed."""
    margin: Margin | None = None
    """Self-tuned margin (``scaler.core.slo``) of a model with an ``slo``; None: manual quantile."""
    on_time: float | None = None
    """Measured on-time share, reported on the decision (the tuner has already used it)."""
    excursion: float = 0.0
    """How far demand may stray above its level now (``scaler.core.excursion``), for the
    margin's spread."""
    sampled_at: float | None = None
    """When ``demand`` was sampled (Unix seconds; None: ``now``). Validity counts from here: a
    slow read does not make fresh data look old, and old data never looks fresh."""


@record
class DecisionState:
    """What ``decide`` carries from one call to the next (returned anew, never mutated)."""

    needs: tuple[tuple[float, int], ...] = ()
    """(time, need) within the scale-down stabilization window that can still be the highest
    (:func:`stabilize` drops those a newer need equals or beats)."""
    last_valid: Decision | None = None
    """The last decision made on fresh data (what HOLD serves)."""
    forecast_need: tuple[float, int, float] | None = None
    """(time, replicas, peak) of the last forecast-based need, held while the forecast is missing."""


@record
class Bounds:
    min: int
    max: int
    standby: int

    @classmethod
    def of(cls, model: ModelSettings, overrides: Overrides | None = None) -> Bounds:
        bounds = cls(min=model.minReplicas, max=model.maxReplicas, standby=model.standbyReplicas)
        if overrides is None:  # every decision: a backtest makes millions
            return bounds
        return cls(
            min=bounds.min if overrides.minReplicas is None else overrides.minReplicas,
            max=bounds.max if overrides.maxReplicas is None else overrides.maxReplicas,
            standby=bounds.standby if overrides.standbyReplicas is None else overrides.standbyReplicas,
        )


def forecast_peak(forecast: Forecast, *, quantile: float, now: float, lead_seconds: float) -> float | None:
    """Highest ``quantile`` forecast over the steps overlapping [now, now + lead].

    A step at time t covers [t, t + step). None when the forecast does not reach ``now``.
    """
    path, h = forecast.quantile(quantile), forecast.h
    origin, step, end = forecast.origin, forecast.step_seconds, now + lead_seconds

    def start(i: int) -> float:  # the same float arithmetic as origin + step * arange(h)
        return origin + step * float(i)

    # The steps in the window are one run [lo, hi): found by arithmetic, then settled on the exact
    # comparisons (a backtest asks this for every decision minute of every sweep point: an
    # arange and two masks over the whole horizon were a fifth of a predictive run's time).
    lo = _floor_within((now - origin) / step, h)
    while lo > 0 and start(lo - 1) + step > now:
        lo -= 1
    while lo < h and not start(lo) + step > now:
        lo += 1
    hi = max(lo, _floor_within((end - origin) / step + 1, h))
    while hi < h and start(hi) <= end:
        hi += 1
    while hi > lo and not start(hi - 1) <= end:
        hi -= 1
    if hi <= lo:
        return None
    # Python's max of a dozen floats: half the time of two numpy reductions, the same number.
    return float(max(max(path[lo:hi].tolist()), max(forecast.mean[lo:hi].tolist())))


def _floor_within(x: float, h: int) -> int:
    """floor(x) clamped to [0, h]; an infinite lead or a NaN clock stays a number."""
    if not x > 0:
        return 0
    return h if x >= h else math.floor(x)


def stabilize(
    needs: tuple[tuple[float, int], ...], need: int, *, now: float, window_seconds: float
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """Highest need within (now - window, now], and the needs to carry forward.

    Scale-up is immediate; scale-down waits until every need in the window is lower. Only the
    needs higher than ``need`` are carried: a lower or equal one can never be the highest again,
    whatever window a later call asks for, since ``need`` is newer and inside every window that
    holds it (a backtest calls this every decision-minute: the carried tuple stays short).
    """
    cutoff = now - window_seconds
    kept = (*[tn for tn in needs if tn[0] > cutoff and tn[1] > need], (now, need))
    return max([n for _, n in kept]), kept


RECALL_SECONDS = 2 * 3600.0
"""How much backfilled demand a (re)started decision recalls into its stabilization window: more
than any hold the tuner chooses (a lead) or a usual ``scaleDown.stabilization``."""


def recalled(state: DecisionState, demand: Series | None, capacity: float, *, now: float) -> DecisionState:
    """A (re)started model's stabilization window, recalled from its backfilled demand: the
    reactive need of every step that ended in the last :data:`RECALL_SECONDS`.

    A running prewarm holds the recent peak for its window; one restarted by a rolling update
    would otherwise answer the demand of one step and let replicas go that the old pod held (and
    the HPA keeps them only for its own 5 minutes). Each decision keeps only the needs inside its
    own window (:func:`stabilize`), so recalling more than that costs nothing. A state that
    already has needs is returned as it is.
    """
    if state.needs or demand is None:
        return state
    ends = demand.start + (np.arange(len(demand.values)) + 1) * demand.step_seconds
    keep = (ends > now - RECALL_SECONDS) & (ends <= now) & np.isfinite(demand.values)
    needs = tuple((float(t), replicas_for(max(0.0, float(v)), capacity))
                  for t, v in zip(ends[keep], demand.values[keep], strict=True))
    return replace(state, needs=needs)


def apply_bounds(need: int, need_reason: Reason, bounds: Bounds) -> tuple[int, Reason]:
    """Standby on top of a non-zero need, then clamp to [min, max]; the reason names the binding step."""
    wanted = need + bounds.standby if need > 0 else 0
    if wanted > bounds.max:
        return bounds.max, Reason.MAX
    if wanted < bounds.min:
        return bounds.min, Reason.MIN
    return wanted, need_reason


def decide(
    inputs: DecisionInputs, model: ModelSettings, state: DecisionState, *, now: float
) -> tuple[Decision, DecisionState]:
    """One model's decision at ``now`` and the state for the next call."""
    policy = model.policy
    sampled = now if inputs.sampled_at is None else min(now, inputs.sampled_at)
    if (inputs.demand is None or not math.isfinite(inputs.demand)
            or now - sampled > policy.staleAfter):
        return _without_demand(model, state, now=now), state
    demand = max(0.0, inputs.demand)
    reactive = replicas_for(demand, model.capacityPerReplica)
    margin = inputs.margin if policy.slo is not None else None
    forecast_replicas, peak, note, forecast_state = _forecast_need(inputs, model, state, now=now)
    base = max(demand, peak) if peak is not None else demand
    # What the SLO's margin goes on: the expected demand, or demand alone (see Margin.forecast).
    applied = base if margin is None or margin.forecast else demand
    if margin is not None:
        # Never below demand: the margin's floor keeps at least the base (floor_factor >= 1).
        forecast_replicas = replicas_for(margin.need(applied, demand, inputs.excursion), model.capacityPerReplica)
    active = (
        demand > policy.activationDemand
        or (peak is not None and peak > policy.activationDemand)
        or model.minReplicas > 0
    )
    need = max(reactive, forecast_replicas or 0) if active else 0
    need_reason = _need_reason(need, reactive, forecast_replicas)
    window = max(policy.stabilization_seconds, margin.hold_seconds if margin else 0.0)
    stabilized, needs = stabilize(state.needs, need, now=now, window_seconds=window)
    if stabilized > need:
        need_reason = Reason.STABILIZATION
    bounds = Bounds.of(model)
    replicas, reason = apply_bounds(stabilized, need_reason, bounds)
    decision = Decision(
        model=model.name, at=now, replicas=replicas, reason=reason, valid=True,
        prewarm_replicas=_prewarm_replicas(inputs, model, replicas, now=now),
        slo_target=policy.slo.onTime if policy.slo else None, on_time=inputs.on_time,
        margin=(margin.value(applied, inputs.excursion, unit=model.capacityPerReplica, demand=demand)
                if margin else None),
        base=base,
        slo_aim=margin.aim if margin else None,
        active=active or replicas > 0, need=stabilized, need_reason=need_reason,
        standby=bounds.standby if stabilized > 0 else 0, reactive_replicas=reactive,
        forecast_replicas=forecast_replicas, demand=demand, forecast_peak=peak,
        lead_seconds=inputs.lead_seconds, expires_at=sampled + policy.staleAfter, message=note,
        sampled_at=sampled,
    )
    return decision, DecisionState(needs=needs, last_valid=decision, forecast_need=forecast_state)


def _prewarm_replicas(inputs: DecisionInputs, model: ModelSettings, replicas: int, *, now: float) -> int:
    """Replicas forecast within lead + node provisioning beyond those ordered now (for balloons)."""
    if inputs.forecast is None or inputs.node_lead_seconds <= 0:
        return 0
    peak = forecast_peak(inputs.forecast, quantile=model.policy.scale_quantile, now=now,
                         lead_seconds=inputs.lead_seconds + inputs.node_lead_seconds)
    if peak is None:
        return 0
    if inputs.margin is not None and model.policy.slo is not None:
        if not inputs.margin.forecast:  # judged on demand alone: nothing to pre-warm ahead
            return 0
        peak = inputs.margin.apply(peak, inputs.excursion)
    wanted = min(replicas_for(peak, model.capacityPerReplica) + model.standbyReplicas,
                 model.maxReplicas)
    return max(0, wanted - replicas)


def _need_reason(need: int, reactive: int, forecast: int | None) -> Reason:
    if need == 0:
        return Reason.IDLE
    return Reason.FORECAST if forecast is not None and forecast > reactive else Reason.REACTIVE


def _forecast_need(
    inputs: DecisionInputs, model: ModelSettings, state: DecisionState, *, now: float
) -> tuple[int | None, float | None, str, tuple[float, int, float] | None]:
    """(replicas, peak, note, state) from the forecast, or the held last one while it is missing."""
    policy = model.policy
    peak = None
    if inputs.forecast is not None:
        peak = forecast_peak(inputs.forecast, quantile=model.policy.scale_quantile, now=now,
                             lead_seconds=inputs.lead_seconds)
    if peak is not None:
        replicas = replicas_for(peak, model.capacityPerReplica)
        return replicas, peak, inputs.forecast_note, (now, replicas, peak)
    held = state.forecast_need
    note = inputs.forecast_note or "no forecast covers the lead window"
    if held is not None and now - held[0] <= policy.staleAfter:
        return held[1], held[2], f"{note}; holding the forecast need from {now - held[0]:.0f}s ago", held
    return None, None, f"{note}; reactive only", None


def _without_demand(model: ModelSettings, state: DecisionState, *, now: float) -> Decision:
    """Hold the last valid decision until staleAfter; then an invalid one (never a zero)."""
    last = state.last_valid
    stale_after = model.policy.staleAfter
    # Held as long as the data it was made on is younger than staleAfter (its sample time, not
    # when it was decided): how old the data is, not how slow the reads were, ends the hold.
    sampled = sampled_time(last) if last is not None else now
    if last is not None and now - sampled <= stale_after:
        return replace(
            last, at=now, reason=Reason.HOLD, expires_at=sampled + stale_after,
            message=f"no fresh demand sample; holding the decision on data from {now - sampled:.0f}s ago",
        )
    since = f"since {now - sampled:.0f}s" if last is not None else "since start"
    return Decision(
        model=model.name, at=now, replicas=last.replicas if last else 0, reason=Reason.NO_DATA,
        valid=False, active=last.active if last else False, need=last.need if last else 0,
        need_reason=Reason.NO_DATA, expires_at=now,
        message=f"no usable demand data {since} (staleAfter {stale_after:.0f}s)",
    )


def sampled_time(decision: Decision) -> float:
    """When the demand behind ``decision`` was sampled (its ``at`` when the source did not say)."""
    return decision.at if decision.sampled_at is None else decision.sampled_at


def with_overrides(decision: Decision, model: ModelSettings, overrides: Overrides) -> Decision:
    """Re-apply a ScaledObject's bounds/standby overrides to a snapshot decision (cheap, pure)."""
    if not decision.valid or replace(overrides, sloOnTime=None) == Overrides():
        return decision
    bounds = Bounds.of(model, overrides)
    replicas, reason = apply_bounds(decision.need, decision.need_reason, bounds)
    if decision.reason is Reason.HOLD:
        reason = Reason.HOLD
    return replace(decision, replicas=replicas, reason=reason,
                   standby=bounds.standby if decision.need > 0 else 0,
                   active=decision.active or replicas > 0)


def finish_all(
    settings: Settings, decisions: Mapping[str, Decision], triggers: Mapping[str, Iterable[Overrides]],
    by_target: Mapping[tuple[str, float], Decision] | None = None,
) -> dict[tuple[str, Overrides], Decision]:
    """Every (model, overrides) a ScaledObject asked with, finished: published with the snapshot,
    so the gRPC handler only looks an answer up and balloons see the numbers KEDA gets.

    ``by_target``: per (model, on-time target) asked with ``sloOnTime``, the decision made with
    that target's own tuned margin; bounds and standby overrides then apply to it."""
    out: dict[tuple[str, Overrides], Decision] = {}
    for name, asked in triggers.items():
        m, decision = settings.model(name), decisions.get(name)
        if m is None or decision is None:
            continue
        for overrides in asked:
            base = decision
            if overrides.sloOnTime is not None and by_target:
                base = by_target.get((name, overrides.sloOnTime), decision)
            out[(name, overrides)] = with_overrides(base, m, overrides)
    return out


def for_target(model: ModelSettings, on_time: float) -> ModelSettings:
    """``model`` with its SLO's on-time target replaced (a ScaledObject's ``sloOnTime``)."""
    assert model.policy.slo is not None
    slo = replace(model.policy.slo, onTime=on_time)
    return replace(model, policy=replace(model.policy, slo=slo))
