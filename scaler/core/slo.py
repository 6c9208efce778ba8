"""Self-tuned safety margin: an SLO in, the cheapest margin that holds it out. Pure functions.

A user knows an SLO ("99 % of requests wait at most 1 s in the queue"), not a forecast quantile.
With ``slo`` set, the decision scales to ``margin.apply(base)`` instead of a fixed quantile::

    base     = max(demand now, forecast p50 peak over [now, now + lead])     (demand units)
    spell    = max - mean of demand over the last 3 hours, or at this time of day on the
               last 7 days (the larger)                                     (excursion)
    need     = max(demand now, min(factor x base + extra + spread x spell, cap))   (margin.apply)
    held     = max(need over the last ``hold`` seconds)                       (hold >= lead)

``factor`` covers bursts proportional to the level, ``extra`` bursts of a fixed size (one API
client's batch job), ``spread`` the error regime - in a bursty spell the next burst is likelier,
so the margin widens with how far demand has just strayed above its mean - and ``cap`` is the
level above which paying for every burst costs more than a static count that meets the SLO
would: above it only real demand (the reactive floor) raises the count. ``hold`` keeps replicas
ordered within the last cold start: dropping one and re-ordering it minutes later leaves the
gap unserved for a whole cold start.

**How the margin is chosen** (:func:`tune`, every :data:`RETUNE_SECONDS`). The model's own recent
history - the demand it saw and the base the decision had at each step - is replayed for every
candidate margin through a fluid model of the Deployment: a replica asked for at ``s`` serves from
``s + cold start``, one dropped is gone at once, so the replicas serving at ``t`` are the fewest
asked for over ``[t - cold start, t]``. Each candidate gets an on-time share (requests in demand
units served in the step they arrive, recent days weighted more) and a cost (replica-steps); the
cheapest candidate whose share reaches the target plus a reserve of half the error budget
(:data:`RESERVE`: the coming week may be burstier than the replayed one) plus the learned
``safety`` wins; all candidates are replayed together, in batches. The candidates span "follow the
forecast closely" to "hold a static count", so where nothing is forecastable the tuner lands on
the static count that meets the SLO, by itself.

**How it adapts** (:func:`adapt`). The replay is an estimate (it ignores the backlog and the
spread of cold starts), and the next days may be burstier than the last ones. The measured on-time
share (serve: vLLM's ``request_queue_time_seconds`` histogram; backtest: the simulated late share,
as late as serve would see it) feeds an integral controller on ``safety``: every shortfall against
the target raises it, every surplus lowers it, within ``[0, (1 - target) x 0.9]``. A surge - the
last day's measured shares, weighted by their requests, spending more than
:data:`SURGE_BUDGETS` error budgets - pins the aim at that ceiling for
:data:`SURGE_SECONDS`: bursty days come in runs, and the integral forgets within hours. A missing
measurement leaves the safety, the surge memory and the margin where they are: no data never
lowers any of them.

E.g. target 0.99, capacity 10, demand 40 rising to 80 within a 30-minute lead at 13:00 on most
days: the replay finds that factor 1.35 with cap 95 meets 0.993 on the last week at the least
cost, so at 12:40 with a forecast peak of 70 the need is min(1.35 x 70, 95) = 94.5 -> 10 replicas.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from scaler.core.excursion import SEASONAL_DAYS, excursions, trailing

FloatArray = npt.NDArray[np.float64]

RETUNE_SECONDS = 3600.0
"""How often the margin is re-chosen from the replayed history."""
MIN_HISTORY_SECONDS = 86400.0
"""Less observed history than this and the margin stays at :data:`STARTING_MARGIN`."""
REPLAY_SECONDS = 7 * 86400.0
"""History replayed to choose a margin (a week: every weekday and hour seen once)."""
HALF_LIFE_SECONDS = 2 * 86400.0
"""Weight of a replayed step halves with this age: recent bursts count more than old ones."""
FEEDBACK_GAIN = 0.1
"""Safety change per unit of measured shortfall (or surplus), per retune: one hour at 0.9 against
0.99 adds 0.009, and hours at 1.0 give it back at 0.001 each, so a surge is remembered for hours,
not days."""
RESERVE = 0.5
"""Share of the error budget (1 - target) the replay must leave unspent: a hedge against a week
burstier than the replayed one."""
CONFIDENCE = 1.0
"""Standard errors of the weekly on-time share the replay holds in reserve (see ``_lower_bound``)."""

FACTORS = (1.0, 1.1, 1.2, 1.35, 1.5, 1.7, 2.0, 2.5, 3.0)
"""Multiplicative margins tried."""
EXTRAS = (0.0, 1.0, 3.0)
"""Additive margins tried, in replicas (times capacity per replica)."""
SPREADS = (0.0, 0.5, 1.0, 2.0)
"""Multipliers of the recent excursion tried."""
CAP_QUANTILES = (0.98, 1.0)
"""Caps tried: these quantiles of the replayed demand, and no cap."""
SURGE_WINDOW = 24
"""Measured shares (one per retune: the last day) whose request-weighted mean tells a surge (see
:data:`SURGE_BUDGETS`): the traffic has left what the replayed week showed. Weighted, because a
quiet hour with two late requests out of ten is noise, not a surge."""
SURGE_BUDGETS = 2.0
"""A day is a surge when it spent more than this many error budgets (below 0.98 for 0.99); one
bad day within the budget is what the budget is for."""
SURGE_SECONDS = 2 * 86400.0
"""After a surge the replay aims at the safety's ceiling this long: bursty days come in runs
(ServeGen m-small's scored week: bursts on days 9, 11 and 13, none in the week before), and the
integral feedback alone forgets a surge within hours."""
STATIC_QUANTILES = (0.95, 0.98, 0.99, 0.999, 1.0)
"""Static counts tried: these quantiles of the replayed demand (and above its peak)."""


@dataclass(frozen=True)
class Margin:
    """How far above the expected demand a model is provisioned, chosen for its SLO."""

    factor: float = 2.0
    extra: float = 0.0
    """Additive margin, demand units."""
    spread: float = 0.0
    """Multiplier on the excursion (``scaler.core.excursion``): a wider margin in a bursty spell."""
    cap: float = math.inf
    """The margin never lifts the need above this (demand units); real demand still does."""
    forecast: bool = True
    """Apply the margin to the forecast's peak (True), or to demand now (False: the replayed
    history had no record of the forecasts, e.g. the first week after ``serve`` starts, so the
    margin was judged on demand alone and must be applied to it alone)."""
    hold_seconds: float = 0.0
    """Scale-down stabilization the margin was chosen with (half a lead or a lead)."""
    expected: float | None = None
    """On-time share the replay predicts for this margin (None: not tuned yet)."""
    aim: float | None = None
    """Share the replay had to reach: target + reserve + safety at the time of tuning."""
    cost: float = math.inf
    """Replica-steps the replay charged this margin (what the tuner minimised)."""

    def apply(self, base: float, excursion: float = 0.0) -> float:
        """Demand to provision for at ``base`` expected demand and the recent ``excursion``."""
        return min(self.factor * base + self.extra + self.spread * excursion, self.cap)

    def value(self, base: float, excursion: float = 0.0) -> float:
        """The margin as one number: provisioned / expected demand (1 = no margin)."""
        return self.apply(base, excursion) / base if base > 0 else self.factor


STARTING_MARGIN = Margin(factor=2.0)
"""Before a day of history exists: twice the expected demand (safe, not cheap)."""


@dataclass(frozen=True)
class TunerState:
    """What the tuner carries between calls (returned anew, never mutated)."""

    margin: Margin = STARTING_MARGIN
    safety: float = 0.0
    """Extra on-time share the replay must reach on top of the target (feedback-learned)."""
    tuned_at: float = -math.inf
    surge_until: float = -math.inf
    """Until then the replay aims at the safety's ceiling (:data:`SURGE_SECONDS`)."""
    recent: tuple[tuple[float, float], ...] = ()
    """The last :data:`SURGE_WINDOW` measured shares, with the requests behind each."""


def lead_steps(seconds: float, step_seconds: float) -> int:
    """Whole steps a duration spans (10.5 minutes at 1-minute steps: 11), float noise tolerated."""
    return math.ceil(seconds / step_seconds - 1e-9)


@dataclass(frozen=True)
class ReplaySpec:
    """The Deployment the replay models, in history steps."""

    cold_steps: int
    """Steps from asking for a replica to it serving (cold start + decision delay)."""
    hold_steps: int
    """Longest scale-down stabilization tried, in steps (a step's need is the max of this many):
    one lead, since a replica dropped and re-ordered is back only a whole cold start later."""
    capacity: float
    """Demand one replica serves."""
    min_hold_steps: int = 0
    """Stabilization the config sets anyway (``scaleDown.stabilization``), in steps."""

    @classmethod
    def for_lead(cls, lead_seconds: float, *, step_seconds: float, capacity: float,
                 stabilization_seconds: float = 0.0) -> ReplaySpec:
        """A Deployment whose replicas serve one lead after they are asked for."""
        cold = lead_steps(lead_seconds, step_seconds)
        return cls(cold_steps=cold, hold_steps=cold + 1, capacity=capacity,
                   min_hold_steps=lead_steps(stabilization_seconds, step_seconds))

    def holds(self) -> list[int]:
        """Stabilizations tried, in steps: half a lead (bursts shorter than that are let go) and
        a whole lead; never below what the config sets."""
        return sorted({max(1, self.min_hold_steps, h) for h in (self.hold_steps // 2, self.hold_steps)})


def usable(on_time: float | None) -> bool:
    """A measured on-time share the tuner may act on (None, NaN and out-of-range are not)."""
    return on_time is not None and math.isfinite(on_time) and 0.0 <= on_time <= 1.0


def due(state: TunerState, now: float) -> bool:
    return now - state.tuned_at >= RETUNE_SECONDS


def tune(
    demand: FloatArray,
    base: FloatArray,
    spec: ReplaySpec,
    *,
    target: float,
    safety: float,
    step_seconds: float,
) -> Margin | None:
    """The cheapest candidate margin whose replayed on-time share reaches the target plus
    :data:`RESERVE` of the error budget plus ``safety``.

    ``demand[i]`` is the demand observed in step ``i`` (NaN = missing), ``base[i]`` the base the
    decision had at step ``i`` (NaN where unknown: the previous step's demand is used). The last
    element is the most recent step. None when there is too little observed history to judge.
    When no candidate reaches the aim, the one with the highest share (cheapest among equals).
    """
    past = _Replay.of(demand, base, spec, step_seconds=step_seconds)
    return None if past is None else _choose(past, target=target, safety=safety)


def replayed_share(demand: FloatArray, base: FloatArray, spec: ReplaySpec, margin: Margin, *,
                   step_seconds: float) -> float | None:
    """The on-time share the tuner's replay gives ``margin`` over the last :data:`REPLAY_SECONDS`
    of ``demand`` (every step alike: no recency weight, no lower bound), to set beside a simulated
    or measured share (``benchmarks/margin_family.py``). None with too little history."""
    past = _Replay.of(demand, base, spec, step_seconds=step_seconds)
    if past is None:
        return None
    late, _ = past.late(margin)
    return 1.0 - float(late.sum() / past.demand.sum())


def candidates(past: _Replay) -> list[Margin]:
    """Every margin the tuner weighs: static counts, then factor x extra x spread x cap x hold."""
    spec, step_seconds = past.spec, past.step_seconds
    whole = spec.hold_steps * step_seconds
    # A static count (the base never matters: min(base + level, level) = level): where nothing is
    # forecastable this is what meets the SLO cheapest, and the tuner must be able to say so.
    out = [Margin(1.0, level, 0.0, level, hold_seconds=whole) for level in past.static_levels()]
    for hold, cap, extra, spread, factor in itertools.product(
            (h * step_seconds for h in spec.holds()), past.caps(), EXTRAS, SPREADS, FACTORS):
        out.append(Margin(factor, extra * spec.capacity, spread, cap, hold_seconds=hold))
    return out


def _choose(past: _Replay, *, target: float, safety: float) -> Margin | None:
    """:func:`tune` on a prepared replay: every candidate replayed at once, the cheapest that
    reaches the aim wins (the highest share, cheapest among equals, when none does)."""
    aim = min(target + RESERVE * (1.0 - target) + safety, 1.0)
    margins = candidates(past)
    share, cost = past.judge(margins)
    reached = np.flatnonzero(share >= aim)
    # Reaching the aim: the cheapest. Short of it: the highest share, cheapest among equals.
    pick = int(reached[np.argmin(cost[reached])]) if reached.size else int(np.lexsort((cost, -share))[0])
    return replace(margins[pick], expected=float(share[pick]), aim=aim, cost=float(cost[pick]),
                   forecast=past.knows_forecasts)


@dataclass(frozen=True)
class _Replay:
    """The recent history, prepared once for replaying many candidate margins."""

    demand: FloatArray
    """Observed demand, 0 where missing (a missing step is neither served nor late)."""
    base: FloatArray
    floor: FloatArray
    """Reactive floor in replicas: the previous step's demand."""
    weight: FloatArray
    total: float
    spec: ReplaySpec
    day: npt.NDArray[np.intp]
    """Start index of each replayed day (counted back from the newest step)."""
    excursion: FloatArray
    """:func:`excursion` as each step's decision saw it (over the steps before it)."""
    step_seconds: float
    known_base: npt.NDArray[np.bool_]
    """Steps whose decision base was recorded."""

    @classmethod
    def of(cls, demand: FloatArray, base: FloatArray, spec: ReplaySpec, *,
           step_seconds: float) -> _Replay | None:
        keep = int(REPLAY_SECONDS // step_seconds)
        demand, base = np.asarray(demand, dtype=np.float64), np.asarray(base, dtype=np.float64)
        if demand.shape != base.shape:
            raise ValueError(f"demand and base differ in length: {demand.shape} vs {base.shape}")
        # The excursion needs the week before the replayed one (its time-of-day part looks back),
        # and the first replayed step the demand of the step before it.
        history = demand[-(keep + (SEASONAL_DAYS + 1) * int(86400 // step_seconds)):]
        spells = excursions(history, step_seconds=step_seconds, lead_steps=spec.cold_steps)[-keep:]
        # Where the decision had no base, it fell back to the last observed demand.
        prev = np.nan_to_num(_forward_fill(np.concatenate([[np.nan], history[:-1]])), nan=0.0)[-keep:]
        demand, base = demand[-keep:], base[-keep:]
        seen = np.isfinite(demand)
        if seen.sum() * step_seconds < MIN_HISTORY_SECONDS:
            return None
        d = np.where(seen, demand, 0.0)
        b = np.maximum(np.where(np.isfinite(base), base, prev), prev)
        age = (len(d) - 1 - np.arange(len(d))) * step_seconds
        weight = np.where(seen, 0.5 ** (age / HALF_LIFE_SECONDS), 0.0)
        total = float((weight * d).sum())
        if total <= 0:
            return None
        floor = np.ceil(prev / spec.capacity - 1e-9)
        per_day = max(1, int(86400 // step_seconds))
        day = np.arange(len(d) % per_day, len(d), per_day)
        day = np.concatenate([[0], day]) if day.size == 0 or day[0] != 0 else day
        return cls(d, b, floor, weight, total, spec, day, spells, step_seconds, np.isfinite(base))

    @property
    def knows_forecasts(self) -> bool:
        """Most replayed steps recorded the base their decision had (forecast included)."""
        seen = self.weight > 0
        return bool(self.known_base[seen].mean() >= 0.5) if seen.any() else False

    def caps(self) -> list[float]:
        seen = self.demand[self.weight > 0]
        return sorted({float(np.quantile(seen, q)) for q in CAP_QUANTILES} | {math.inf})

    def static_levels(self) -> list[float]:
        """Static counts worth trying: high quantiles of the replayed demand, and above its peak
        (the next burst may be bigger than the last), in whole replicas."""
        seen = self.demand[self.weight > 0]
        top = float(seen.max())
        levels = [float(np.quantile(seen, q)) for q in STATIC_QUANTILES] + [1.25 * top, 1.5 * top]
        c = self.spec.capacity
        return sorted({math.ceil(level / c - 1e-9) * c for level in levels if level > 0})

    def run(self, margin: Margin) -> tuple[float, float]:
        """(on-time share the coming week can count on, replica-steps) of one margin all day."""
        late, replicas = self.late(margin)
        missed = np.add.reduceat(self.weight * late, self.day)
        return _lower_bound(self.arrived(), missed), float(replicas.sum())

    def arrived(self) -> FloatArray:
        """Recency-weighted demand per replayed day."""
        return np.add.reduceat(self.weight * self.demand, self.day)

    def late(self, margin: Margin) -> tuple[FloatArray, FloatArray]:
        """Late demand and replicas asked for, per replayed step, under ``margin``."""
        late, replicas = self.late_many([margin])
        return late[0], replicas[0]

    def late_many(self, margins: list[Margin]) -> tuple[FloatArray, FloatArray]:
        """:meth:`late` of many margins at once: arrays [margin, step]."""
        spec = self.spec

        def column(name: str) -> FloatArray:
            return np.array([getattr(m, name) for m in margins], dtype=np.float64)[:, None]

        wanted = np.minimum(column("factor") * self.base + column("extra")
                            + column("spread") * self.excursion, column("cap"))
        replicas = np.maximum(self.floor, np.ceil(wanted / spec.capacity - 1e-9))
        holds = np.array([max(spec.min_hold_steps, round(m.hold_seconds / self.step_seconds))
                          for m in margins])
        for hold in np.unique(holds):
            rows = holds == hold
            replicas[rows] = trailing(maximum_filter1d, replicas[rows], int(hold))
        # Serving at t: the fewest asked for over [t - cold, t] (a dropped replica restarts cold).
        served = trailing(minimum_filter1d, replicas, spec.cold_steps + 1) * spec.capacity
        backlog = _fifo_backlog(self.demand - served)
        # FIFO: the backlog is served first, so after a shortfall this step's arrivals wait too.
        waiting = np.concatenate([np.zeros((len(margins), 1)), backlog[:, :-1]], axis=1)
        return np.maximum(0.0, self.demand - np.maximum(0.0, served - waiting)), replicas

    def judge(self, margins: list[Margin], *, chunk: int = 64) -> tuple[FloatArray, FloatArray]:
        """(on-time share the coming week can count on, recency-weighted replica-steps) of each
        margin, replayed in chunks (a chunk of 64 over a week of minutes is ~5 MB per array)."""
        arrived = self.arrived()
        share, cost = np.empty(len(margins)), np.empty(len(margins))
        for i in range(0, len(margins), chunk):
            late, replicas = self.late_many(margins[i:i + chunk])
            missed = np.add.reduceat(late * self.weight, self.day, axis=1)
            share[i:i + chunk] = [_lower_bound(arrived, m) for m in missed]
            cost[i:i + chunk] = (replicas * self.weight).sum(axis=1)
        return share, cost


def _lower_bound(arrived: FloatArray, missed: FloatArray) -> float:
    """On-time share the coming week can count on: the weighted mean over the replayed days, less
    :data:`CONFIDENCE` standard errors of it (the next week may be burstier than the average of
    the last one; a week with one bad day has a wide spread, a calm one not)."""
    ok = arrived > 0
    shares, w = 1.0 - missed[ok] / arrived[ok], arrived[ok]
    mean = float((w * shares).sum() / w.sum())
    if shares.shape[0] < 2:
        return mean
    spread = float((w * (shares - mean) ** 2).sum() / w.sum())
    n_eff = float(w.sum() ** 2 / (w ** 2).sum())
    return mean - CONFIDENCE * math.sqrt(spread / n_eff)


def _fifo_backlog(excess: FloatArray) -> FloatArray:
    """Backlog after each step of a fluid queue, ``q(t) = max(0, q(t-1) + excess(t))``, q(-1) = 0.

    Lindley's closed form ``q(t) = S(t) - min(0, min over j <= t of S(j))`` with ``S`` the running
    sum of ``excess``: the queue recursion without a Python loop, so hundreds of candidates can
    be replayed over a week of minutes in well under a second.
    """
    total = np.cumsum(excess, axis=-1)
    return total - np.minimum(np.minimum.accumulate(total, axis=-1), 0.0)


def _forward_fill(x: FloatArray) -> FloatArray:
    ok = np.isfinite(x)
    idx = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(idx, out=idx)
    return np.where(np.cumsum(ok) > 0, x[idx], np.nan)


def retune(
    state: TunerState,
    *,
    now: float,
    demand: FloatArray,
    base: FloatArray,
    spec: ReplaySpec,
    target: float,
    on_time: float | None,
    step_seconds: float,
    requests: float | None = None,
) -> TunerState:
    """One tuner step at ``now``: feed back the measured share, then re-choose the margin.

    Called at every decision; does work only every :data:`RETUNE_SECONDS`. Without a valid
    measurement the margin may rise with what the history shows but never fall (fail static).
    """
    if not due(state, now):
        return state
    state = adapt(state, on_time, target=target, now=now, requests=requests)
    past = _Replay.of(demand, base, spec, step_seconds=step_seconds)
    # After a surge, aim at the safety's ceiling for a while (see SURGE_SECONDS).
    safety = max(state.safety, _ceiling(target)) if now < state.surge_until else state.safety
    margin = _choose(past, target=target, safety=safety) if past is not None else None
    if margin is None or past is None:
        return replace(state, tuned_at=now)
    # No measurement: never a margin cheaper than the one in use (on the same replay).
    if not usable(on_time) and state.margin.expected is not None and past.run(margin)[1] < past.run(state.margin)[1]:
        return replace(state, tuned_at=now)
    return replace(state, margin=margin, tuned_at=now)


def adapt(state: TunerState, on_time: float | None, *, target: float, now: float = -math.inf,
          requests: float | None = None) -> TunerState:
    """Integral feedback of a measured on-time share on the safety, and the surge memory
    (:data:`SURGE_SECONDS` from ``now`` when the last day's shares spent more than
    :data:`SURGE_BUDGETS` error budgets).
    ``requests`` behind the share weigh it in that mean (unknown: 1). None or a bad share holds
    both."""
    if on_time is None or not usable(on_time):
        return state
    ceiling = _ceiling(target)
    # Symmetric integral action: the safety settles where the measured share averages the
    # target (an asymmetric rule would ratchet up on noise and never come down).
    safety = state.safety + FEEDBACK_GAIN * (target - on_time)
    weight = requests if requests is not None and math.isfinite(requests) and requests > 0 else 1.0
    recent = (*state.recent, (on_time, weight))[-SURGE_WINDOW:]
    surge = sum(s * w for s, w in recent) / sum(w for _, w in recent) < 1.0 - SURGE_BUDGETS * (1.0 - target)
    return replace(state, safety=min(max(safety, 0.0), ceiling), recent=recent,
                   surge_until=now + SURGE_SECONDS if surge else state.surge_until)


def _ceiling(target: float) -> float:
    """Highest safety: 0.9 of the error budget. With the reserve on top the aim can pass 1; it
    is capped there, and the replay then takes the highest share it can reach."""
    return 0.9 * (1.0 - target)
