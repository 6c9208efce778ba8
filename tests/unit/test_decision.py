"""The decision core: table tests per step, timeline scenarios, hypothesis invariants."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.types import Forecast
from scaler.core.config import ModelSettings, Overrides, parse_settings
from scaler.core.decision import (
    Bounds,
    DecisionInputs,
    DecisionState,
    apply_bounds,
    decide,
    forecast_peak,
    stabilize,
    with_overrides,
)
from scaler.core.model import Decision, Reason
from scaler.core.replicas import replicas_for, replicas_of, whole
from scaler.core.slo import Margin

T0 = 1_767_225_600.0


def model(**kw) -> ModelSettings:
    raw = {"name": "m", "capacityPerReplica": 10, "maxReplicas": 50, "staleAfter": "2m",
           "scaleDown": {"stabilization": "5m"}, **kw}
    return parse_settings({"replay": {}, "models": [raw]}).settings.models[0]


def flat(origin: float, value: float, h: int = 60, step: int = 60, q90: float | None = None) -> Forecast:
    mean = np.full(h, value)
    return Forecast(origin=origin, step_seconds=step, mean=mean, quantiles={0.9: np.full(h, q90 if q90 is not None else value)})


@pytest.mark.parametrize(
    ("demand", "capacity", "replicas"),
    [(0, 10, 0), (-3, 10, 0), (0.01, 10, 1), (10, 10, 1), (10.0000001, 10, 1), (10.1, 10, 2), (32, 16, 2), (33, 16, 3)],
)
def test_replicas_for(demand, capacity, replicas) -> None:
    assert replicas_for(demand, capacity) == replicas
    # The tuner's replay rounds a vector of demands, and its levels, the same way.
    assert replicas_of(np.array([max(0.0, demand)], dtype=np.float64), capacity)[0] == replicas
    assert whole(demand, capacity) == replicas * capacity


def test_forecast_peak_takes_only_the_lead_window() -> None:
    times = T0 + 60 * np.arange(30)
    mean = np.where(times < T0 + 600, 1.0, 50.0)
    f = Forecast(origin=T0, step_seconds=60, mean=mean, quantiles={0.9: mean * 2})
    assert forecast_peak(f, quantile=0.9, now=T0, lead_seconds=300) == 2.0
    assert forecast_peak(f, quantile=0.9, now=T0, lead_seconds=600) == 100.0
    assert forecast_peak(f, quantile=0.9, now=T0 + 3600, lead_seconds=60) is None  # forecast too old


@settings(max_examples=400, deadline=None)
@given(h=st.integers(0, 40), step=st.sampled_from([1, 60, 600, 1800]),
       origin=st.sampled_from([0.0, T0, T0 + 0.1]), offset=st.floats(-3.0, 45.0),
       exact=st.booleans(), lead_steps=st.floats(0.0, 6.0), seed=st.integers(0, 99))
def test_forecast_peak_is_the_max_over_the_steps_overlapping_the_window(
        h: int, step: int, origin: float, offset: float, exact: bool, lead_steps: float, seed: int) -> None:
    """The window is found by arithmetic (speed); it must be exactly the steps whose [t, t + step)
    overlaps [now, now + lead], edges included: the definition, with a mask over every step."""
    mean = np.random.default_rng(seed).random(h)
    f = Forecast(origin=origin, step_seconds=step, mean=mean, quantiles={0.9: mean[::-1].copy()})
    now = origin + step * (round(offset) if exact else offset)  # on a step edge, or anywhere
    lead = math.inf if lead_steps > 5.9 else step * (round(lead_steps) if exact else lead_steps)
    times = origin + step * np.arange(h, dtype=np.float64)
    mask = (times + step > now) & (times <= now + lead)
    expected = float(max(mean[::-1][mask].max(), mean[mask].max())) if mask.any() else None
    assert forecast_peak(f, quantile=0.9, now=now, lead_seconds=lead) == expected


@pytest.mark.parametrize(
    ("needs", "need", "now", "expected"),
    [
        ((), 3, 100, 3),
        (((0, 5),), 3, 100, 5),  # within the 300 s window: hold 5
        (((0, 5),), 3, 300, 3),  # the window has passed
        (((0, 1),), 4, 100, 4),  # scale-up is immediate
    ],
)
def test_stabilize(needs, need, now, expected) -> None:
    assert stabilize(needs, need, now=now, window_seconds=300)[0] == expected


@settings(max_examples=200, deadline=None)
@given(calls=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 9), st.sampled_from([0.0, 60.0, 300.0, 900.0])),
                      min_size=1, max_size=60))
def test_stabilize_carries_only_what_can_still_be_the_highest(calls: list[tuple[int, int, float]]) -> None:
    """The carried needs are pruned (only those higher than every later one); each answer must
    still be the definition's: the highest need of every call within its window, windows
    changing from call to call (the tuner's hold moves it) and needs cut by an earlier window
    gone, as before."""
    carried: tuple[tuple[float, int], ...] = ()
    everything: list[tuple[float, int]] = []  # the definition keeps every need its windows left
    now = 0.0
    for gap, need, window in calls:
        now += gap
        cutoff = now - window
        everything = [*(tn for tn in everything if tn[0] > cutoff), (now, need)]
        highest, carried = stabilize(carried, need, now=now, window_seconds=window)
        assert highest == max(n for _, n in everything)
        kept = [n for _, n in carried]
        assert all(a > b for a, b in pairwise(kept))  # falling: nothing dominated kept


@pytest.mark.parametrize(
    ("need", "bounds", "expected"),
    [
        (0, Bounds(0, 10, 2), (0, Reason.REACTIVE)),  # standby rides only on a real need
        (3, Bounds(0, 10, 2), (5, Reason.REACTIVE)),
        (9, Bounds(0, 10, 2), (10, Reason.MAX)),
        (0, Bounds(2, 10, 1), (2, Reason.MIN)),
    ],
)
def test_apply_bounds(need, bounds, expected) -> None:
    assert apply_bounds(need, Reason.REACTIVE, bounds) == expected


def test_forecast_scales_up_ahead_of_demand() -> None:
    m = model()
    inputs = DecisionInputs(demand=15, forecast=flat(T0, 30, q90=42), lead_seconds=600)
    d, _ = decide(inputs, m, DecisionState(), now=T0)
    assert (d.replicas, d.reason, d.reactive_replicas, d.forecast_replicas) == (5, Reason.FORECAST, 2, 5)
    assert d.valid and d.active and d.expires_at == T0 + 120


@pytest.mark.parametrize(
    ("margin", "demand", "peak", "replicas"),
    [
        (Margin(1.1, cap=100.0), 80.0, 90.0, 10),    # below the cap: min(1.1 x 90, 100) = 99
        (Margin(1.1, cap=100.0), 120.0, 90.0, 14),   # above it: 1.1 x 120 = 132, an HPA with 10 % room
        (Margin(3.0, cap=100.0), 120.0, 90.0, 15),   # the factor's room stops at 1.2x: 144
        (Margin(1.0, extra=100.0, cap=100.0), 120.0, 90.0, 12),  # a static count: demand itself
        (Margin(1.1, cap=100.0), 80.0, 120.0, 14),   # a ramp the forecast sees: 1.1 x 120, not the cap
        (Margin(3.0, cap=100.0), 80.0, 120.0, 15),   # its room stops at 1.2x there too: 144
        (Margin(1.0, extra=100.0, cap=100.0), 80.0, 120.0, 12),  # a static count: the forecast's peak
    ],
)
def test_above_the_cap_the_expected_demand_keeps_the_factors_room(
        margin: Margin, demand: float, peak: float, replicas: int) -> None:
    """The cap limits what the margin anticipates beyond the expected level, not the room over
    the level itself: a cap read off the past goes stale when the level moves, and then only
    the expected demand (demand now, or the forecast's peak over the lead where higher) passes
    it. With the floor on demand now (before 2026-12-07) the last three asked for the cap, 10
    replicas, and a ramp one cold start long waited a cold start for the rest."""
    m = model(slo={"onTime": 0.99})
    inputs = DecisionInputs(demand=demand, forecast=flat(T0, peak), lead_seconds=600, margin=margin)
    d, _ = decide(inputs, m, DecisionState(), now=T0)
    assert d.replicas == replicas
    assert d.margin == pytest.approx(margin.need(max(demand, peak), demand) / max(demand, peak))


def test_reactive_floor_catches_bursts_the_forecast_missed() -> None:
    d, _ = decide(DecisionInputs(demand=95, forecast=flat(T0, 5), lead_seconds=600), model(), DecisionState(), now=T0)
    assert (d.replicas, d.reason) == (10, Reason.REACTIVE)


def test_scale_down_waits_for_the_window_timeline() -> None:
    m = model()
    state = DecisionState()
    replicas = []
    for minute, demand in enumerate([80, 80, 20, 20, 20, 20, 20, 20, 20]):
        d, state = decide(DecisionInputs(demand=demand, forecast=None, lead_seconds=600), m, state, now=T0 + 60 * minute)
        replicas.append((d.replicas, d.reason))
    assert [r for r, _ in replicas] == [8, 8, 8, 8, 8, 8, 2, 2, 2]  # 5-minute stabilization
    assert replicas[3][1] is Reason.STABILIZATION


def test_missing_demand_holds_then_turns_invalid_not_zero() -> None:
    m = model()
    d, state = decide(DecisionInputs(demand=45, forecast=None, lead_seconds=600), m, DecisionState(), now=T0)
    assert d.replicas == 5
    held, _ = decide(DecisionInputs(demand=None, forecast=None, lead_seconds=600), m, state, now=T0 + 100)
    assert (held.replicas, held.reason, held.valid, held.expires_at) == (5, Reason.HOLD, True, T0 + 120)
    stale, _ = decide(DecisionInputs(demand=None, forecast=None, lead_seconds=600), m, state, now=T0 + 121)
    assert (stale.valid, stale.reason, stale.replicas) == (False, Reason.NO_DATA, 5)
    nan, _ = decide(DecisionInputs(demand=float("nan"), forecast=None, lead_seconds=600), m, state, now=T0 + 10)
    assert nan.reason is Reason.HOLD


def test_no_data_since_start_is_invalid() -> None:
    d, _ = decide(DecisionInputs(demand=None, forecast=None, lead_seconds=600), model(), DecisionState(), now=T0)
    assert not d.valid and "since start" in d.message


def test_missing_forecast_holds_the_forecast_need() -> None:
    m = model(scaleDown={"stabilization": "0s"})
    _, state = decide(DecisionInputs(demand=5, forecast=flat(T0, 60), lead_seconds=600), m, DecisionState(), now=T0)
    d, state2 = decide(DecisionInputs(demand=5, forecast=None, lead_seconds=600, forecast_note="fit failed"), m, state, now=T0 + 60)
    assert d.replicas == 6 and "holding the forecast need" in d.message
    d, _ = decide(DecisionInputs(demand=5, forecast=None, lead_seconds=600), m, state2, now=T0 + 200)
    assert d.replicas == 1 and "reactive only" in d.message


def test_wake_from_zero_on_forecast_and_activation_threshold() -> None:
    m = model(minReplicas=0)
    d, _ = decide(DecisionInputs(demand=0, forecast=flat(T0, 3), lead_seconds=600), m, DecisionState(), now=T0)
    assert d.active and d.replicas == 1
    quiet = model(minReplicas=0, activationDemand=5)
    d, _ = decide(DecisionInputs(demand=0, forecast=flat(T0, 3), lead_seconds=600), quiet, DecisionState(), now=T0)
    assert not d.active and d.replicas == 0 and d.reason is Reason.IDLE


def test_prewarm_replicas_look_a_node_provisioning_further() -> None:
    times = T0 + 60 * np.arange(60)
    mean = np.where(times < T0 + 900, 10.0, 70.0)
    f = Forecast(origin=T0, step_seconds=60, mean=mean, quantiles={0.9: mean})
    inputs = DecisionInputs(demand=10, forecast=f, lead_seconds=600, node_lead_seconds=600)
    d, _ = decide(inputs, model(), DecisionState(), now=T0)
    assert (d.replicas, d.prewarm_replicas) == (1, 6)


def test_overrides_reapply_bounds_to_the_snapshot_decision() -> None:
    m = model(standbyReplicas=1)
    d, _ = decide(DecisionInputs(demand=30, forecast=None, lead_seconds=600), m, DecisionState(), now=T0)
    assert d.replicas == 4
    assert with_overrides(d, m, Overrides(maxReplicas=2)).replicas == 2
    assert with_overrides(d, m, Overrides(standbyReplicas=0)).replicas == 3
    assert with_overrides(d, m, Overrides(minReplicas=7)).reason is Reason.MIN


# --- invariants -----------------------------------------------------------------------------------

demands = st.floats(min_value=0, max_value=10_000, allow_nan=False)
bounds_st = st.tuples(st.integers(0, 20), st.integers(1, 60), st.integers(0, 5)).filter(lambda b: b[0] <= b[1])


def _decide(demand, forecast_value, b, state=None, now=T0):
    m = model(minReplicas=b[0], maxReplicas=b[1], standbyReplicas=b[2])
    f = None if forecast_value is None else flat(T0 - 60, forecast_value)
    return decide(DecisionInputs(demand=demand, forecast=f, lead_seconds=600), m, state or DecisionState(), now=now)


@settings(max_examples=200, deadline=None)
@given(demands, st.one_of(st.none(), demands), bounds_st)
def test_bounds_hold(demand, forecast_value, b) -> None:
    d, _ = _decide(demand, forecast_value, b)
    assert b[0] <= d.replicas <= b[1]


@settings(max_examples=200, deadline=None)
@given(demands, demands, st.one_of(st.none(), demands), bounds_st)
def test_replicas_never_fall_as_demand_rises(d1, d2, forecast_value, b) -> None:
    lo, hi = sorted((d1, d2))
    assert _decide(lo, forecast_value, b)[0].replicas <= _decide(hi, forecast_value, b)[0].replicas


@settings(max_examples=200, deadline=None)
@given(demands, demands, demands, bounds_st)
def test_replicas_never_fall_as_forecast_rises(demand, f1, f2, b) -> None:
    lo, hi = sorted((f1, f2))
    assert _decide(demand, lo, b)[0].replicas <= _decide(demand, hi, b)[0].replicas


@settings(max_examples=200, deadline=None)
@given(demands, st.one_of(st.none(), demands), bounds_st, st.floats(min_value=1, max_value=119))
def test_missing_data_never_lowers_replicas(demand, forecast_value, b, later) -> None:
    d, state = _decide(demand, forecast_value, b)
    for missing_demand, missing_forecast in ((None, forecast_value), (demand, None), (None, None)):
        d2, _ = _decide(missing_demand, missing_forecast, b, state=state, now=T0 + later)
        assert d2.replicas >= d.replicas or not d2.valid


@settings(max_examples=100, deadline=None)
@given(st.lists(demands, min_size=2, max_size=30), bounds_st)
def test_scale_down_is_rate_limited(series, b) -> None:
    """Within the stabilization window the count never drops below the window's highest need."""
    m = model(minReplicas=b[0], maxReplicas=b[1], standbyReplicas=b[2])
    state, out = DecisionState(), []
    for i, demand in enumerate(series):
        d, state = decide(DecisionInputs(demand=demand, forecast=None, lead_seconds=600), m, state, now=T0 + 60 * i)
        out.append(d)
    raw = [replicas_for(demand, m.capacityPerReplica) for demand in series]
    for i, d in enumerate(out):
        window = raw[max(0, i - 4): i + 1]  # (now - 5 min, now] at 1-minute steps
        assert d.need == max(window)
        assert b[0] <= d.replicas


def test_a_restart_recalls_the_reactive_needs_of_the_backfilled_demand() -> None:
    from forecasting.types import Series
    from scaler.core.decision import RECALL_SECONDS, recalled

    now = T0 + 3600.0
    # 10-minute steps up to now; the last two ended at now - 600 and now.
    values = np.array([10.0] * 20 + [np.nan, 95.0, 31.0])
    demand = Series(start=now - 23 * 600.0, step_seconds=600, values=values)
    state = recalled(DecisionState(), demand, 10.0, now=now)
    assert state.needs[-2:] == ((now - 600.0, 10), (now, 4))
    assert all(t > now - RECALL_SECONDS for t, _ in state.needs)
    assert len(state.needs) == int(RECALL_SECONDS // 600) - 1  # the missing step recalls nothing
    # The window of the first decision keeps only what falls inside it.
    assert stabilize(state.needs, 2, now=now + 60.0, window_seconds=300.0)[0] == 4
    assert stabilize(state.needs, 2, now=now + 60.0, window_seconds=900.0)[0] == 10
    # A state that already decided, or no history, is left alone.
    decided = DecisionState(needs=((now, 3),))
    assert recalled(decided, demand, 10.0, now=now) is decided
    assert recalled(DecisionState(), None, 10.0, now=now) == DecisionState()


def test_a_decision_is_a_value_record() -> None:
    """``@record`` (scaler.core.record) trades the run-time freeze for speed; what code relies on
    stays: equality and hashing by value, ``replace`` for changed copies, no stray attributes."""
    a = Decision(model="m", at=1.0, replicas=2, reason=Reason.REACTIVE, valid=True, active=True)
    b = Decision(model="m", at=1.0, replicas=2, reason=Reason.REACTIVE, valid=True, active=True)
    assert a == b and hash(a) == hash(b)
    c = replace(a, replicas=3)
    assert (a.replicas, c.replicas) == (2, 3) and c != a
    with pytest.raises(AttributeError):
        a.typo = 1  # type: ignore[attr-defined]  # slots: a misspelt field fails loudly
