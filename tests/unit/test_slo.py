"""The SLO margin tuner (scaler/core/slo.py): the closed-loop replay by hand, convergence on a fresh
week, the calm daily choice, the spent-week reaction, a step change, missing data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from scaler.core import slo
from scaler.core.excursion import SEASONAL_DAYS, Running, excursion, excursions
from scaler.core.slo import Margin, ReplaySpec, TunerState, adapt, budget_spent, retune, tune

STEP = 60.0
DAY = 1440


def demand_trace(days: int, *, cv: float, seed: int, level: float = 100.0) -> np.ndarray:
    """Minutes of demand: a daily cycle times 10-minute lognormal bursts of spread ``cv``."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    cycle = level * (1.0 + 0.5 * np.sin(2 * np.pi * t / DAY))
    bursts = np.repeat(rng.lognormal(-cv**2 / 2, cv, size=days * DAY // 10 + 1), 10)[: t.shape[0]]
    return cycle * bursts


SPEC = ReplaySpec.for_lead(10 * 60 + 30, step_seconds=STEP, capacity=10.0)


def attained(margin: Margin, demand: np.ndarray, spec: ReplaySpec = SPEC, *, last: int = 0) -> float:
    """The replay's on-time share of ``margin`` over ``demand`` (over the ``last`` steps only)."""
    past = slo._Replay.of(demand, np.full_like(demand, np.nan), spec, step_seconds=STEP)
    assert past is not None
    weight = np.zeros_like(past.demand)
    weight[-last:] = 1.0
    late, _ = past.closed_loop([margin], weight)
    return 1.0 - float(late[0]) / float((weight * past.demand).sum())


def by_hand_spec(window_steps: int = 1) -> ReplaySpec:
    return ReplaySpec(cold_steps=1, hold_steps=1, capacity=10.0, window_steps=window_steps)


def test_closed_loop_replay_by_hand() -> None:
    """10-minute steps, capacity 10, one step of cold start, no margin: demand steps from 10 to 30.

    step   seen (demand + backlog)  asked  served  late  backlog after
    k      10 + 0                   1      10      20    20
    k+1    30 + 20                  5      10      30    40   (the backlog is served first)
    k+2    30 + 40                  7      50      20    20
    k+3    30 + 20                  5      50       0     0
    k+4    30                       3      30       0     0
    """
    demand = np.array([10.0] * 200 + [30.0] * 100)
    past = slo._Replay.of(demand, np.full_like(demand, np.nan), by_hand_spec(), step_seconds=600.0)
    assert past is not None
    margin = Margin(factor=1.0, hold_seconds=600.0)
    late, held = past.closed_loop([margin], np.ones_like(demand))
    assert late[0] == pytest.approx(70.0)
    assert held[0] == pytest.approx(200 * 1 + 1 + 5 + 7 + 5 + 96 * 3)
    share, cost = past.judge([margin], recency=False)
    assert share[0] == pytest.approx(1 - 70 / 5000) and cost[0] == held[0]
    # The HPA's window (3 steps) keeps the most asked of the last three: 7 at k+2..k+4, 5 at
    # k+5, then 3. No less late (the shortfall is before them), more replicas held.
    past3 = slo._Replay.of(demand, np.full_like(demand, np.nan), by_hand_spec(3), step_seconds=600.0)
    assert past3 is not None
    late3, held3 = past3.closed_loop([margin], np.ones_like(demand))
    assert late3[0] == pytest.approx(70.0)
    assert held3[0] == pytest.approx(200 + 1 + 5 + 7 + 7 + 7 + 5 + 94 * 3)
    # Twice the margin: 2 replicas before the step, 8 asked at k+1 but serving only at k+2, so
    # the step is still late for its cold start: 10 at k, 20 at k+1, none after.
    late2, _ = past.closed_loop([Margin(factor=2.0, hold_seconds=600.0)], np.ones_like(demand))
    assert late2[0] == pytest.approx(30.0)


def test_a_capped_margin_keeps_the_factors_room_over_demand_now_in_the_replay() -> None:
    """As in the decision (:meth:`Margin.need`): factor 1.5 capped at 10 asks for 1.2 x what it
    sees, not the cap, once demand passes it. The table above, with that margin:

    step   seen (demand + backlog)  asked              served  late  backlog after
    <k     10                       ceil(12 / 10) = 2  20       0     0
    k      10                       2                  20      10    10
    k+1    30 + 10                  ceil(48 / 10) = 5  20      20    20
    k+2    30 + 20                  6                  50       0     0
    k+3    30                       ceil(36 / 10) = 4  40       0     0
    """
    demand = np.array([10.0] * 200 + [30.0] * 100)
    past = slo._Replay.of(demand, np.full_like(demand, np.nan), by_hand_spec(), step_seconds=600.0)
    assert past is not None
    margin = Margin(factor=1.5, cap=10.0, hold_seconds=600.0)
    late, held = past.closed_loop([margin], np.ones_like(demand))
    assert late[0] == pytest.approx(30.0)
    assert held[0] == pytest.approx(201 * 2 + 5 + 6 + 97 * 4)
    assert [margin.need(s, s) for s in (10.0, 40.0, 50.0, 30.0)] == pytest.approx([12.0, 48.0, 60.0, 36.0])


def test_a_capped_margin_keeps_the_factors_room_over_the_recorded_forecast_in_the_replay() -> None:
    """As in the decision: where the base its decision had (the forecast's peak over the lead)
    is above the cap, the replayed candidate asks for 1.2 x that base, not the cap: factor 1.5
    capped at 10, demand 10 and base 30 at one step asks ceil(36 / 10) = 4 replicas there and
    ceil(12 / 10) = 2 everywhere else (with the floor on demand now it asked 2 there too)."""
    demand = np.full(300, 10.0)
    base = np.full_like(demand, np.nan)
    base[250] = 30.0
    past = slo._Replay.of(demand, base, by_hand_spec(), step_seconds=600.0)
    assert past is not None
    margin = Margin(factor=1.5, cap=10.0, hold_seconds=600.0)
    late, held = past.closed_loop([margin], np.ones_like(demand))
    assert late[0] == 0.0
    assert held[0] == pytest.approx(299 * 2 + 4)
    assert margin.need(30.0, 10.0) == pytest.approx(36.0)


@pytest.mark.parametrize("factor", slo.FACTORS)
@pytest.mark.parametrize("cap", [50.0, math.inf])
@pytest.mark.parametrize(("base", "demand"), [(80.0, 60.0), (120.0, 120.0), (40.0, 10.0)])
def test_the_floor_binds_only_above_a_cap(factor: float, cap: float, base: float, demand: float) -> None:
    """Never below the expected demand times the floor; without a cap the margin on the base
    (never below demand) is already above that, so the floor changes nothing there."""
    margin = Margin(factor, extra=5.0, spread=0.5, cap=cap)
    need = margin.need(base, demand, excursion=4.0)
    assert need >= demand and need >= min(factor, slo.FLOOR_FACTOR) * max(base, demand)
    if math.isinf(cap):
        assert need == margin.apply(base, 4.0)


def test_replaying_many_margins_at_once_equals_one_at_a_time() -> None:
    """The batched replay the tuner uses (mixed holds, caps, statics) is the single replay."""
    demand = demand_trace(3, cv=0.3, seed=11)
    base = demand * 1.1
    base[:300] = np.nan
    past = slo._Replay.of(demand, base, SPEC, step_seconds=STEP)
    assert past is not None
    margins = slo.candidates(past)[::37]
    assert len({m.hold_seconds for m in margins}) > 1
    weight = past.weights(recency=True)
    late, held = past.closed_loop(margins, weight)
    for i, margin in enumerate(margins):
        one_late, one_held = past.closed_loop([margin], weight)
        assert late[i] == pytest.approx(one_late[0], rel=1e-12) and held[i] == pytest.approx(one_held[0], rel=1e-12)


@pytest.mark.parametrize("block", [7, slo.AHEAD_STEPS, 720])
@pytest.mark.parametrize("cv", [0.6, 0.15])
def test_answers_worked_out_ahead_are_the_step_by_step_replay_to_the_last_bit(
        block: int, cv: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut for the steps a backlog has not touched changes no float: every candidate's
    late demand per block and replicas held equal the replay computed in full at every step, on
    bursty demand with gaps (lean candidates build backlogs, fat ones never do) and on calmer
    demand, where most steps take the shortcut; with blocks short and long, so that backlogs
    start, last and pass across their edges."""
    monkeypatch.setattr(slo, "AHEAD_STEPS", block)
    demand = demand_trace(5, cv=cv, seed=5)[:4 * DAY + 300]  # days end inside the shortcut's blocks
    demand[2000:2090] = np.nan  # a collection gap
    base = demand * 1.05
    base[:500] = np.nan
    past = slo._Replay.of(demand, base, SPEC, step_seconds=STEP)
    assert past is not None
    margins = slo.family(past)  # each replayed day's own caps and standbys
    assert not np.array_equal(margins.cap[0], margins.cap[2])
    weight = past.weights(recency=True)
    late, held = past.closed_loop_blocks(margins, weight)
    full_late, full_held = past.closed_loop_blocks(margins, weight, ahead=False)
    assert np.array_equal(late, full_late) and np.array_equal(held, full_held)
    on_time = 1.0 - late.sum(axis=0) / (weight * past.demand).sum()
    assert on_time.min() < 0.99 < 1.0 == on_time.max()  # both kinds of candidate were replayed


@pytest.mark.parametrize(("seed", "lead", "stabilization", "cv", "base", "block"), [
    (6, 630, 120.0, 0.3, 1.0, 60), (24, 630, 0.0, 0.6, 1.0, 60), (11, 270, 0.0, 0.6, 1.0, 13),
    (27, 270, 600.0, 0.1, 0.9, 60)])
def test_the_shortcut_waits_until_a_backlog_has_left_every_window(
        seed: int, lead: float, stabilization: float, cv: float, base: float, block: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a backlog made a candidate ask for stays in its held window for the hold, and what
    that held in the serving window for a cold start more. Shortcut steps taken any earlier
    change the answer on these replays (each was found to catch a shortcut resumed after the
    hold only, or 6 steps early); the shortcut must still give the step-by-step floats."""
    monkeypatch.setattr(slo, "AHEAD_STEPS", block)
    spec = ReplaySpec.for_lead(lead, step_seconds=STEP, capacity=10.0, stabilization_seconds=stabilization)
    demand = demand_trace(2, cv=cv, seed=seed)
    past = slo._Replay.of(demand, demand * base, spec, step_seconds=STEP)
    assert past is not None
    margins, weight = slo.candidates(past), past.weights(recency=True)
    late, held = past.closed_loop_blocks(margins, weight)
    full_late, full_held = past.closed_loop_blocks(margins, weight, ahead=False)
    assert np.array_equal(late, full_late) and np.array_equal(held, full_held)


@pytest.mark.parametrize("cold", [0, 1])
@pytest.mark.parametrize("block", [1, 2, 60])
def test_the_shortcut_with_windows_of_one_step(cold: int, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hold, no HPA window, a cold start of nothing or one step: windows with no tail at all."""
    monkeypatch.setattr(slo, "AHEAD_STEPS", block)
    spec = ReplaySpec(cold_steps=cold, hold_steps=1, capacity=10.0, window_steps=1)
    demand = demand_trace(2, cv=0.6, seed=3)
    past = slo._Replay.of(demand, demand, spec, step_seconds=STEP)
    assert past is not None
    margins, weight = slo.candidates(past), past.weights(recency=False)
    late, held = past.closed_loop_blocks(margins, weight)
    full_late, full_held = past.closed_loop_blocks(margins, weight, ahead=False)
    assert np.array_equal(late, full_late) and np.array_equal(held, full_held)


def test_a_cap_read_off_the_replay_is_judged_on_the_days_that_broke_it() -> None:
    """Traffic that keeps setting records: each day's burst is 15 % above the day before's. A
    cap at the replayed peak is never late on the history it was read off; walked forward, each
    day's cap is the peak before it, and each day's burst breaks it. A static count is judged as
    the count it is, alike either way."""
    demand = np.full(22 * DAY, 20.0)
    for d in range(22):
        demand[d * DAY + 600:d * DAY + 640] = 100.0 * 1.15 ** d
    # A forecast that sees the lead ahead, 20 % short: the factor covers that, and 1.2 x the
    # forecast (the room kept above a cap) does not, so only the cap can make the margin late.
    ahead = SPEC.cold_steps + 1
    base = 0.8 * np.array([demand[t:t + ahead].max() for t in range(demand.shape[0])])
    past = slo._Replay.of(demand, base, SPEC, step_seconds=STEP)
    assert past is not None
    margins = slo.family(past)
    peak_cap = past.levels().caps[1]  # the replayed peak (quantile 1.0)
    assert peak_cap == pytest.approx(past.peak)
    capped = next(i for i, m in enumerate(margins.margins)
                  if (m.factor, m.extra, m.spread, m.cap) == (2.0, 0.0, 0.0, peak_cap))
    walked, _ = past.judge(margins, recency=False)
    hindsight, _ = past.judge(margins.margins, recency=False)
    assert hindsight[capped] == 1.0 and walked[capped] < 0.99
    # On each replayed day the cap is the peak of the two weeks before it: the day before's burst.
    for day in range(past.days):
        assert margins.cap[day, capped] == pytest.approx(100.0 * 1.15 ** (21 - day - 1))
    statics = [i for i, m in enumerate(margins.margins) if m.factor == 1.0 and m.extra == m.cap]
    assert statics and np.array_equal(walked[statics], hindsight[statics])


def test_tune_meets_the_target_on_unseen_data_from_the_same_process() -> None:
    history, future = demand_trace(14, cv=0.25, seed=1), demand_trace(14, cv=0.25, seed=2)
    margin = tune(history, np.full_like(history, np.nan), SPEC, target=0.99, step_seconds=STEP)
    assert margin is not None and margin.expected is not None and margin.expected >= 0.995
    assert margin.aim == pytest.approx(0.995)
    # Converges to the target, not to the safest margin: near 0.99 on a fresh fortnight, and
    # cheaper than a flat x3.
    assert 0.99 <= attained(margin, future) <= 0.9995
    fresh = slo._Replay.of(future, np.full_like(future, np.nan), SPEC, step_seconds=STEP)
    assert fresh is not None
    _, cost = fresh.judge([margin, Margin(factor=3.0, hold_seconds=margin.hold_seconds)], recency=False)
    assert cost[0] < 0.8 * cost[1]


def test_tune_needs_a_day_of_history() -> None:
    empty = np.zeros(0)
    assert tune(empty, empty, SPEC, target=0.99, step_seconds=STEP) is None
    short = demand_trace(1, cv=0.2, seed=1)[: DAY - 60]
    assert tune(short, np.full_like(short, np.nan), SPEC, target=0.99, step_seconds=STEP) is None


def test_a_spent_week_counts_requests_not_hours() -> None:
    """Quiet hours with a few late requests are noise: the week's budget is counted in requests."""
    good = ((1.0, 10_000.0),) * 162
    # Six busy hours at 0.8: 12,000 late of 1.68M requests, over 70 % of the 1 % budget (11,760).
    assert budget_spent((*good, *((0.8, 10_000.0),) * 6), 0.99)
    # Six quiet night hours at 0.8 (2 of 10 late): 12 late requests, nothing.
    assert not budget_spent((*good, *((0.8, 10.0),) * 6), 0.99)
    # Over a full week the bar is target + 0.3 of the budget on the request-weighted share.
    assert not budget_spent(((0.9931, 1.0),) * 168, 0.99) and budget_spent(((0.9929, 1.0),) * 168, 0.99)
    state = TunerState()
    for _ in range(slo.BUDGET_HOURS + 10):
        state = adapt(state, 1.0, requests=10_000.0)
    assert len(state.recent) == slo.BUDGET_HOURS and not budget_spent(state.recent, 0.99)


def hours_ago(began: float, ended: float) -> slo.Outlier:
    """An outlier burst that began and ended these many hours before the newest entry."""
    return slo.Outlier(began=began * 3600.0, ended=ended * 3600.0)


def test_a_lone_outlier_burst_is_not_a_spent_week_unless_the_rest_of_it_is() -> None:
    """Found on a fresh draw of spiky traffic: one spike at 4x anything else seen spent the week's
    budget in 20 minutes, and the spent choice held 16-20 replicas for the week after it where
    10 met the SLO. After an outlier burst, two hours holding most of the week's late requests
    are left out and the rest of the week decides; late requests spread wider are a pattern."""
    good, bad = (1.0, 10_000.0), (0.3, 10_000.0)
    one_off = (*(good,) * 100, *(bad,) * 2, *(good,) * 66)  # 14,000 late within two hours
    peak = hours_ago(67.5, 66.2)  # the outlier was in those hours (entries 67 and 66 back)
    assert budget_spent(one_off, 0.99) and not budget_spent(one_off, 0.99, outlier=peak)
    # A record of two hours or less cannot tell a one-off: judged whole.
    assert budget_spent(one_off[100:102], 0.99, outlier=hours_ago(1.5, 0.2))
    # The same late requests in two bursts two days apart: half in either, a pattern.
    two = (*(good,) * 50, *(bad,) * 2, *(good,) * 50, *(bad,) * 2, *(good,) * 64)
    two = tuple((0.65, w) if s == 0.3 else (s, w) for s, w in two)
    assert budget_spent(two, 0.99, outlier=hours_ago(65.5, 64.2))
    # One burst, and the rest of the week spent on its own (0.992 an hour): spent.
    leaky = tuple((0.992, w) if s == 1.0 else (s, w) for s, w in one_off)
    assert budget_spent(leaky, 0.99, outlier=peak)


@pytest.mark.parametrize(("began", "ended", "one_off"), [
    (64.5, 63.0, False), (66.5, 65.0, True), (68.9, 67.5, True), (70.0, 69.0, False),
    (20.0, 19.0, False), (90.0, 20.0, True)])
def test_a_lone_burst_is_a_one_off_only_when_its_late_hours_were_the_outliers(
        began: float, ended: float, one_off: bool) -> None:
    """An outlier served on time does not make another burst's late requests a one-off: they must
    fall within its hours, from its start to its end, however long it lasted. Found on
    regime-shift traffic (fixed seed, 10m): a spike a day after a bursty afternoon passed that
    afternoon off as a one-off, and the calm margin then chosen left the next afternoon's burst
    late. An entry measures the hour before it, so an hour either way is kept."""
    good, bad = (1.0, 10_000.0), (0.3, 10_000.0)
    week = (*(good,) * 100, *(bad,) * 2, *(good,) * 66)  # the late hours: entries 67 and 66 back
    assert budget_spent(week, 0.99, outlier=hours_ago(began, ended)) is not one_off


def test_a_surge_late_where_it_rose_and_again_further_up_is_one_burst() -> None:
    """The first and the third hour of a six-hour surge late, the second on time (a margin chosen
    between them): both the surge's own, so a one-off once it has ended. Found on the ``flash``
    event kind (seed 13, 30m), where the two worst hours in a row were the burst: the week was
    spent and the spent choice cost 1.99x the cheapest hindsight baseline."""
    good, bad = (1.0, 10_000.0), (0.3, 10_000.0)
    week = (*(good,) * 100, bad, good, bad, *(good,) * 4, *(good,) * 61)  # surge: entries 67-61 back
    surge = hours_ago(67.5, 61.2)
    assert budget_spent(week, 0.99) and not budget_spent(week, 0.99, outlier=surge)
    # A late hour after the surge had ended (and an hour on time) is a recurrence.
    again = (*week[:110], bad, *week[111:])
    assert budget_spent(again, 0.99, outlier=surge)


def test_a_burst_longer_than_a_one_off_is_not_one_while_it_goes_on() -> None:
    """A one-off is at most two hours: while the newest three hours all missed the target, the
    burst is longer than that and the week is judged whole; once an hour meets the target
    again, its two worst hours may be a one-off as before. Found on regime-shift traffic: the
    first three hours of a storm passed as a one-off, and the calm margin met the fourth."""
    good, bad, storm = (1.0, 10_000.0), (0.98, 10_000.0), (0.0, 10_000.0)
    # Two stormy hours then a third just under the target; the outlier peaked in the storm.
    going = (*(good,) * 100, storm, storm, bad)
    assert budget_spent(going, 0.99, outlier=hours_ago(2.5, 0.2))
    assert not budget_spent((*going, good), 0.99, outlier=hours_ago(3.5, 1.5))  # it ended: a one-off
    # Two hours of it are a one-off as before; so is a third hour at the target, or idle.
    assert not budget_spent((*(good,) * 100, storm, storm), 0.99, outlier=hours_ago(1.5, 0.2))
    assert not budget_spent((*(good,) * 100, storm, storm, (0.99, 10_000.0)), 0.99, outlier=hours_ago(2.5, 1.2))
    assert not budget_spent((*(good,) * 100, storm, storm, (1.0, 0.0)), 0.99, outlier=hours_ago(2.5, 1.2))


def test_a_one_off_happens_once() -> None:
    """An hour that missed the target after the burst had ended says the bursts recur: the week
    is judged whole, however few late requests that hour holds. The hours right after the
    burst, before one meets the target, are its tail and do not count. Found on regime-shift
    traffic: three small misses after a storm's first afternoon left the calm margin on for a
    day, until the next burst."""
    good, storm, miss = (1.0, 10_000.0), (0.0, 10_000.0), (0.9, 10_000.0)
    burst = (*(good,) * 100, storm, storm)  # 20,000 late; the outlier peaked in these hours
    # A miss after it adds 1,000 late requests: the rest of the week stays within its budget (11,760).
    assert not budget_spent((*burst, *(good,) * 16), 0.99, outlier=hours_ago(17.5, 16.2))
    assert budget_spent((*burst, *(good,) * 10, miss, *(good,) * 5), 0.99, outlier=hours_ago(17.5, 16.2))
    # An idle hour ended the burst as well as an hour on time would.
    assert budget_spent((*burst, (1.0, 0.0), miss, *(good,) * 14), 0.99, outlier=hours_ago(17.5, 16.2))
    # Its tail: the hour right after it missed too, then the burst was over.
    assert not budget_spent((*burst, miss, *(good,) * 15), 0.99, outlier=hours_ago(17.5, 16.2))


def test_retune_tells_a_lone_outlier_burst_from_a_spent_week() -> None:
    """The same week of measured shares (one two-hour burst holding every late request): with
    an outlier spike in the demand in those hours it stays calm and says why (``one_off``,
    logged by serve); without one, or with one at another time, it is a spent week."""
    demand = demand_trace(14, cv=0.1, seed=2)
    nan = np.full_like(demand, np.nan)
    spike, elsewhere = demand.copy(), demand.copy()
    spike[-2 * DAY:-2 * DAY + 20] = 4.0 * demand.max()  # peaks 47.98 hours back: entry 47
    elsewhere[-4 * DAY:-4 * DAY + 20] = 4.0 * demand.max()
    good, bad = (1.0, 10_000.0), (0.3, 10_000.0)
    # With this hour's entry added, the late hours are entries 48 and 47 back.
    state = TunerState(recent=(*(good,) * 119, *(bad,) * 2, *(good,) * 46))

    def step(d: np.ndarray) -> TunerState:
        return retune(state, now=0.0, demand=d, base=nan, spec=SPEC, target=0.99, on_time=1.0,
                      requests=10_000.0, step_seconds=STEP)

    lone, pattern, apart = step(spike), step(demand), step(elsewhere)
    assert lone.one_off and not lone.spent and lone.margin.aim == pytest.approx(0.995)
    assert pattern.spent and not pattern.one_off and pattern.margin.aim == pytest.approx(0.9995)
    assert apart.spent and not apart.one_off


def test_retune_lets_a_surge_that_stays_be_a_one_off() -> None:
    """Late requests in the first hour of a six-hour surge whose peak came at its end, and none
    after: once the surge has ended, a one-off, not a spent week. With the two hours around the
    peak as the burst, the late hour was five hours from it and the week was spent (a flash
    crowd at a 30-minute cold start, docs/BACKTEST.md: the spent choice then held a fat margin
    for the week after)."""
    demand = demand_trace(14, cv=0.1, seed=2)
    begin = len(demand) - 2 * DAY
    demand[begin:begin + 360] = np.linspace(3.0, 4.5, 360) * demand.max()
    good, bad = (1.0, 10_000.0), (0.3, 10_000.0)
    state = TunerState(recent=(*(good,) * 119, *(bad,) * 2, *(good,) * 46))  # late: 48 and 47 back
    def step(d: np.ndarray) -> TunerState:
        return retune(state, now=0.0, demand=d, base=np.full_like(d, np.nan), spec=SPEC, target=0.99,
                      on_time=1.0, requests=10_000.0, step_seconds=STEP)

    assert step(demand).one_off and not step(demand).spent
    # While it goes on the week is judged whole: the calm margin could not follow it.
    assert step(demand[:begin + 300]).spent


def test_an_outlier_burst_is_beyond_anything_else_replayed() -> None:
    """The last week's peak over 1.5x every step of the two replayed weeks outside its burst, and
    how long ago the burst began; a burst seen before, or one as high more than two hours
    apart, is not one."""
    demand = demand_trace(14, cv=0.1, seed=2)
    assert slo.outlier_burst(demand, step_seconds=STEP) is None
    spike = demand.copy()
    spike[-3 * DAY:-3 * DAY + 20] = 4.0 * demand.max()
    # Its first and last minutes, back from the newest step.
    assert slo.outlier_burst(spike, step_seconds=STEP) == slo.Outlier((3 * DAY - 1) * STEP, (3 * DAY - 20) * STEP)
    seen_before = spike.copy()
    seen_before[2 * DAY:2 * DAY + 20] = 3.0 * demand.max()  # 4x, after 3x ten days earlier
    assert slo.outlier_burst(seen_before, step_seconds=STEP) is None
    outside = spike.copy()
    outside[-3 * DAY + 150] = 3.0 * demand.max()  # a second burst 2.5 hours on: a pattern
    assert slo.outlier_burst(outside, step_seconds=STEP) is None
    assert slo.outlier_burst(np.full(14 * DAY, np.nan), step_seconds=STEP) is None
    assert slo.outlier_burst(np.zeros(14 * DAY), step_seconds=STEP) is None


def test_an_outlier_surge_that_stays_starts_where_it_rose() -> None:
    """A surge that stays for hours (a flash crowd, a failover) is one burst, however late in it
    the peak comes; it starts where demand rose (the hour that was late), and it is judged once
    it has ended."""
    demand = demand_trace(14, cv=0.1, seed=2)
    top = demand.max()
    surge = demand.copy()
    begin = len(demand) - 2 * DAY
    surge[begin:begin + 360] = np.linspace(3.0, 4.5, 360) * top  # six hours, rising to its end
    # It began at its first minute and ended at its last.
    surged = slo.Outlier((2 * DAY - 1) * STEP, (2 * DAY - 360) * STEP)
    assert slo.outlier_burst(surge, step_seconds=STEP) == surged
    # Dips below two thirds of the peak inside it (a noisy plateau) do not split it...
    dipped = surge.copy()
    dipped[begin + 60:begin + 360:30] = top
    assert slo.outlier_burst(dipped, step_seconds=STEP) == surged
    # ...but a step as high more than two hours from the rest of it makes a pattern.
    again = surge.copy()
    again[begin + 360 + 150] = 3.5 * top
    assert slo.outlier_burst(again, step_seconds=STEP) is None
    # While it goes on (up in the last ten minutes), it is not judged yet: nor is a spike.
    assert slo.outlier_burst(surge[:begin + 300], step_seconds=STEP) is None
    assert slo.outlier_burst(surge[:begin + 361], step_seconds=STEP) is None
    assert slo.outlier_burst(surge[:begin + 370], step_seconds=STEP) == slo.Outlier(369 * STEP, 10 * STEP)
    # Nor while the last minutes are missing: it may still go on (fail static).
    unseen = surge[:begin + 370].copy()
    unseen[-3:] = np.nan
    assert slo.outlier_burst(unseen, step_seconds=STEP) is None


def test_an_outlier_over_a_level_that_never_fell_starts_where_it_is_high() -> None:
    """Demand never below 1/2.25 of the peak in the replay: no rise to start the burst at, so it
    starts at its first step within 1.5x of the peak (as a spike on flat traffic does)."""
    flat = np.full(14 * DAY, 100.0)
    flat[-DAY:-DAY + 20] = 160.0  # 1.6x: an outlier, but the flat level is over 160 / 2.25
    assert slo.outlier_burst(flat, step_seconds=STEP) == slo.Outlier((DAY - 1) * STEP, (DAY - 20) * STEP)


def test_the_calm_choice_lets_a_lone_burst_spend_the_reserve_not_the_budget() -> None:
    """A 10-minute spike at 4x the peak, once in two weeks, holds most of the late requests of a
    margin that does not hold 4x the peak all along. The calm choice leaves it out (the rest must
    reach 0.995, the whole 0.99): it costs less than any margin meeting 0.995 with the spike, and
    the spike spends the reserve. Twice, the spikes are a pattern, and what covers them costs
    more."""
    demand = demand_trace(14, cv=0.1, seed=9)
    nan = np.full_like(demand, np.nan)
    spike = demand.copy()
    spike[5 * DAY + 600:5 * DAY + 610] = 4.0 * demand.max()
    lone = tune(spike, nan, SPEC, target=0.99, step_seconds=STEP)
    assert lone is not None
    whole = slo.replayed_share(spike, nan, SPEC, lone, step_seconds=STEP)
    assert whole is not None and 0.99 <= whole < 0.995
    past = slo._Replay.of(spike, nan, SPEC, step_seconds=STEP)
    assert past is not None
    margins = slo.candidates(past)
    share, cost = past.judge(margins, recency=False)
    covering = float(cost[share >= 0.995].min())  # the cheapest margin meeting 0.995 with the spike
    assert lone.cost < covering
    twice = spike.copy()
    twice[9 * DAY + 300:9 * DAY + 310] = 4.0 * demand.max()
    both = tune(twice, nan, SPEC, target=0.99, step_seconds=STEP)
    assert both is not None and both.cost > 1.2 * lone.cost
    assert slo.replayed_share(twice, nan, SPEC, both, step_seconds=STEP) >= 0.99


def test_a_short_record_is_a_share_of_a_weeks_budget() -> None:
    """After a start or a restart one bad hour is not a spent week: the week's requests are
    extrapolated from the hours recorded. Hours at 0.9 spend 70 % of 1 % of 168 hours in 12."""
    state = TunerState()
    for hour in range(1, 14):
        state = adapt(state, 0.9, requests=100.0)
        assert budget_spent(state.recent, 0.99) == (hour >= 12), hour


@pytest.mark.parametrize("bad", [None, math.nan, -0.1, 1.5])
def test_a_missing_measurement_records_nothing(bad: float | None) -> None:
    state = adapt(TunerState(), 0.999, requests=100.0)
    assert adapt(state, bad, requests=100.0) == state


def test_idle_hours_keep_the_trailing_week_seven_days_long() -> None:
    """Found on a bursty trace idle most nights: idle hours recorded nothing, so the "trailing
    week" of 168 entries reached back past a burst eight days old and kept the budget spent.
    An idle hour (read, nothing finished) is an hour of no requests."""
    state = adapt(TunerState(), None, requests=0.0)
    assert state.recent == (slo.IDLE_HOUR,)
    burst = adapt(adapt(TunerState(), 0.0, requests=1000.0), 0.0, requests=1000.0)
    assert budget_spent(burst.recent, 0.99)  # 2000 late: spent against a week of 1000/h
    for _ in range(166):  # the rest of the week: every other hour busy and on time, the others idle
        burst = adapt(burst, 1.0, requests=1000.0) if len(burst.recent) % 2 else adapt(burst, None, requests=0.0)
    assert len(burst.recent) == 168 and budget_spent(burst.recent, 0.99)  # still inside the week
    later = adapt(adapt(burst, None, requests=0.0), None, requests=0.0)
    assert slo.IDLE_HOUR in later.recent and (0.0, 1000.0) not in later.recent
    assert not budget_spent(later.recent, 0.99)


def hourly(state: TunerState, now: float, demand: np.ndarray, on_time: float | None) -> TunerState:
    return retune(state, now=now, demand=demand, base=np.full_like(demand, np.nan), spec=SPEC,
                  target=0.99, on_time=on_time, step_seconds=STEP)


def test_a_calm_margin_is_chosen_once_a_day() -> None:
    """A calm week: the margin is chosen at the first retune with a day of history, and an
    hour's burst after it moves nothing until the next day's choice."""
    demand = demand_trace(3, cv=0.1, seed=3)
    state = hourly(TunerState(), 0.0, demand, 0.999)
    chosen = state.margin
    assert chosen.expected is not None and chosen.aim == pytest.approx(0.995) and not state.spent
    burst = demand.copy()
    burst[-60:] *= 4.0
    for hour in range(1, 24):
        state = hourly(state, hour * 3600.0, burst, 0.999)
        assert state.margin == chosen and state.chosen_at == 0.0
    state = hourly(state, 24 * 3600.0, burst, 0.999)
    assert state.chosen_at == 24 * 3600.0 and state.margin != chosen


def test_a_spent_week_rechooses_hourly_at_the_higher_aim_and_recovers() -> None:
    demand = demand_trace(3, cv=0.25, seed=4)
    state = hourly(TunerState(), 0.0, demand, 0.999)
    calm = state.margin
    # A week at 0.97: three times the budget, spent.
    state = hourly(dataclasses.replace(state, recent=((0.97, 1.0),) * 167), 3600.0, demand, 0.97)
    assert state.spent and state.chosen_at == 3600.0
    assert state.margin.aim == pytest.approx(0.9995)
    # A wider margin than the calm one, on the same replay.
    spent_share, calm_share = (slo.replayed_share(demand, np.full_like(demand, np.nan), SPEC, m, step_seconds=STEP)
                               for m in (state.margin, calm))
    assert spent_share is not None and calm_share is not None and spent_share > calm_share
    state = hourly(state, 7200.0, demand, 0.95)
    assert state.spent and state.chosen_at == 7200.0  # every hour while spent
    # The week recovered: the calm choice at once (not a day later), the same as the first.
    state = hourly(dataclasses.replace(state, recent=((1.0, 1.0),) * 167), 10800.0, demand, 1.0)
    assert not state.spent and state.chosen_at == 10800.0
    assert state.margin.aim == pytest.approx(0.995) and state.margin == calm


@pytest.mark.parametrize("bad", [None, math.nan, -0.1, 1.5])
def test_without_a_measurement_the_margin_never_gets_cheaper(bad: float | None) -> None:
    calm, wild = demand_trace(7, cv=0.05, seed=4), demand_trace(7, cv=0.4, seed=5)
    tuned = hourly(TunerState(), 0.0, wild, 0.999)
    assert tuned.margin.expected is not None
    later = 2 * slo.CHOOSE_SECONDS
    held = hourly(tuned, later, calm, bad)
    # The calm week alone would allow a cheaper margin; without a measurement it is not taken.
    assert held.margin == tuned.margin and held.recent == tuned.recent and held.chosen_at == later
    measured = hourly(tuned, later, calm, 0.999)
    assert measured.margin != tuned.margin and measured.margin.cost < held.margin.cost


def test_an_idle_hour_does_not_hold_the_margin() -> None:
    """A model idle at night whose daily choice falls in an idle hour: the cheaper margin is
    taken (nothing was late; the replay judges the history), where missing data would hold it."""
    calm, wild = demand_trace(7, cv=0.05, seed=4), demand_trace(7, cv=0.4, seed=5)
    tuned = hourly(TunerState(), 0.0, wild, 0.999)
    later = 2 * slo.CHOOSE_SECONDS
    idle = retune(tuned, now=later, demand=calm, base=np.full_like(calm, np.nan), spec=SPEC, target=0.99,
                  on_time=None, requests=0.0, step_seconds=STEP)
    measured = hourly(tuned, later, calm, 0.999)
    assert idle.margin == measured.margin and idle.margin.cost < tuned.margin.cost
    assert idle.recent == (*tuned.recent, slo.IDLE_HOUR)


def test_retune_only_when_due() -> None:
    demand = demand_trace(2, cv=0.2, seed=1)
    first = hourly(TunerState(), 1000.0, demand, None)
    again = hourly(first, 1000.0 + slo.RETUNE_SECONDS - 1, demand * 3, None)
    assert again is first


def test_answers_a_level_step_at_once() -> None:
    """Demand doubles: the margin applies to the base, which follows demand within one step."""
    margin = Margin(factor=1.3)
    before, after = 100.0, 200.0
    assert margin.apply(after) == pytest.approx(260.0)
    assert margin.apply(after) > 1.9 * margin.apply(before)


def test_answers_a_step_change_in_burstiness_within_bounded_time() -> None:
    """Bursts grow from cv 0.1 to 0.4 after a calm week. Retuning hourly on what it measured,
    the tuner finds the week's budget spent within hours, re-chooses every hour on the recent
    days, and holds the new regime within half a day.
    (Measured on a fresh week of the new regime: 0.831 at the change; spent after 8 hours, with
    0.735, 0.669, 0.816 and 0.74 measured; 0.990 after 12 h and 0.988 after 24 h. Before the
    cap kept the factor's room over demand now (``FLOOR_FACTOR``) the calm margin lost more
    early on: 0.747 at the change, spent after 4 hours, 0.981 after 12 h.)"""
    calm, wild = demand_trace(7, cv=0.1, seed=6), demand_trace(2, cv=0.4, seed=7)
    trace = np.concatenate([calm, wild])
    fresh = demand_trace(7, cv=0.4, seed=8)
    # A calm week measured before the change (0.999 an hour, 1000 requests each).
    state, start = TunerState(recent=((0.999, 1000.0),) * 168), calm.shape[0]
    reached: dict[int, float] = {}
    spent_at = None
    for hour in range(25):
        stop = start + hour * 60
        seen = trace[:stop]
        # What serve would measure: the on-time share of the last hour under the margin in use.
        measured = attained(state.margin, seen, last=60) if hour else 0.999
        state = retune(state, now=stop * STEP, demand=seen, base=np.full_like(seen, np.nan), spec=SPEC,
                       target=0.99, on_time=measured, step_seconds=STEP, requests=1000.0)
        if state.spent and spent_at is None:
            spent_at = hour
        if hour in (0, 12, 24):
            reached[hour] = attained(state.margin, fresh)
    assert reached[0] < 0.85  # the calm week's margin does not hold the new regime
    assert spent_at is not None and spent_at <= 8
    assert reached[12] >= 0.985 and reached[24] >= 0.985


def test_excursion_per_decision_equals_the_replays_vector() -> None:
    """The decision's excursion (serve, backtest) and the replay's are one definition."""
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 50.0, 10 * DAY)
    x[500:530] = np.nan  # missing steps count 0 on both sides
    vector = excursions(x, step_seconds=STEP, lead_steps=31)
    for i in [0, 1, 2, 179, 180, 181, 1349, 1350, 1440, 1500, 5000, x.shape[0] - 1]:
        assert excursion(x[:i], step_seconds=STEP, lead_steps=31) == pytest.approx(vector[i]), i


def test_excursion_sees_this_time_of_day_on_two_past_days() -> None:
    """Bursts at 18:00 on two of the last days widen the margin at 17:50 today, not at 06:00.
    One day's burst alone does not: with it, ServeGen m-small at 10m held twice its demand for
    days after a burst that did not come back at that hour."""
    x = np.full(4 * DAY, 100.0)
    x[2 * DAY + 18 * 60: 2 * DAY + 18 * 60 + 20] = 300.0
    once = excursion(x[: 3 * DAY + 17 * 60 + 50], step_seconds=STEP, lead_steps=31)
    x[DAY + 18 * 60 + 10: DAY + 18 * 60 + 30] = 250.0  # a day earlier too, ten minutes later
    evening = excursion(x[: 3 * DAY + 17 * 60 + 50], step_seconds=STEP, lead_steps=31)
    morning = excursion(x[: 3 * DAY + 6 * 60], step_seconds=STEP, lead_steps=31)
    assert once == pytest.approx(0.0)
    assert evening > 100.0 and morning == pytest.approx(0.0)
    # The second largest of the days': the smaller burst's spread over its window (the lead
    # +- an hour: 151 steps), not the larger one's.
    assert evening == pytest.approx(250.0 - (20 * 250.0 + 131 * 100.0) / 151)


def test_a_margin_judged_without_recorded_forecasts_applies_to_demand_alone() -> None:
    """After a restart the replay has no record of past forecasts: the margin it picks was judged
    on demand, so the decision applies it to demand, not to the (higher) forecast peak."""
    demand = demand_trace(3, cv=0.25, seed=1)
    blind = tune(demand, np.full_like(demand, np.nan), SPEC, target=0.99, step_seconds=STEP)
    seeing = tune(demand, demand * 1.05, SPEC, target=0.99, step_seconds=STEP)
    assert blind is not None and not blind.forecast
    assert seeing is not None and seeing.forecast


def test_replayed_share_is_the_tuners_replay_of_the_last_two_weeks() -> None:
    calm = demand_trace(15, cv=0.05, seed=9)
    stormy = calm.copy()
    stormy[:DAY - 60] *= 3.0  # a storm on day 1: before the replayed (last) two weeks
    base = np.full_like(calm, np.nan)
    margin = Margin(1.5, hold_seconds=11 * 60)
    share = slo.replayed_share(stormy, base, SPEC, margin, step_seconds=STEP)
    assert share == slo.replayed_share(calm, base, SPEC, margin, step_seconds=STEP)
    assert share is not None and 0.99 < share <= 1.0
    # a storm inside the window shows, and less than a day of history is no answer
    stormy[-2 * DAY:-DAY] *= 3.0
    stormy_share = slo.replayed_share(stormy, base, SPEC, margin, step_seconds=STEP)
    assert stormy_share is not None and stormy_share < share
    assert slo.replayed_share(calm[:DAY // 2], base[:DAY // 2], SPEC, margin, step_seconds=STEP) is None


def test_running_excursion_equals_the_decisions() -> None:
    """The backtest's step-by-step excursion is exactly the decision's, at every step."""
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 50.0, 9 * DAY + 100)
    x[500:530] = np.nan
    zero = np.nan_to_num(x, nan=0.0)
    for lead in (1, 31, 2000):  # 2000: past days' windows reach into the last day
        running = Running(step_seconds=STEP, lead_steps=lead)
        for i in range(0, x.shape[0], 7):
            lookback = x[max(0, i - (SEASONAL_DAYS + 1) * DAY):i]
            assert running.at(zero, i) == excursion(lookback, step_seconds=STEP, lead_steps=lead), (lead, i)


def test_the_margin_as_one_number_stays_finite_near_zero_demand() -> None:
    """Found on a bursty trace with idle nights: a forecast decaying towards 0 (1e-140) made the
    exported margin a ratio over nothing (1e140). Below one replica's demand it counts as one."""
    static = Margin(factor=1.0, extra=200.0, cap=200.0)  # hold 20 replicas of capacity 10
    assert static.value(1e-140, unit=10.0) == pytest.approx(20.0)
    assert static.value(0.0, unit=10.0) == pytest.approx(20.0)
    assert static.value(50.0, unit=10.0) == pytest.approx(4.0)  # above one replica: the plain ratio
    lean = Margin(factor=1.5)
    assert [lean.value(b, unit=10.0) for b in (0.0, 1e-140, 3.0, 10.0, 400.0)] == pytest.approx([1.5] * 5)
    assert Margin(factor=1.2, extra=10.0).value(100.0, unit=10.0) == pytest.approx(1.3)


def whole_static_counts(demand: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share, cost) on the tuner's replay of every static count, from one replica to just over
    the peak: what the tuner's choice must not cost more than (or, given a forecast, less)."""
    past = slo._Replay.of(demand, base, SPEC, step_seconds=STEP)
    assert past is not None
    c, hold = SPEC.capacity, SPEC.hold_steps * STEP
    statics = [Margin(1.0, k * c, 0.0, k * c, hold_seconds=hold) for k in range(1, math.ceil(demand.max() / c) + 2)]
    return past.judge(statics, recency=False)


def test_on_unforecastable_bursts_no_static_count_is_cheaper_than_the_choice() -> None:
    """Where nothing is forecastable the tuner must not cost more than the static count that
    meets the SLO, at whole-replica resolution. Found on a bursty trace idle most of the time:
    the static counts tried jumped from the 0.999 quantile to the peak, and the tuner held 20
    replicas where 17 met the SLO."""
    rng = np.random.default_rng(0)
    demand = rng.poisson(4.0, 14 * DAY).astype(np.float64)  # a few requests a minute, and:
    for start in rng.choice(demand.shape[0] - 60, size=3, replace=False):  # three bursts
        length = int(rng.integers(10, 40))
        demand[start:start + length] += rng.poisson(rng.uniform(50.0, 90.0), length)
    spike = int(rng.integers(0, demand.shape[0] - 10))
    demand[spike:spike + 5] += 150.0  # and a 5-minute spike: the peak
    base = np.full_like(demand, np.nan)
    chosen = tune(demand, base, SPEC, target=0.99, step_seconds=STEP)
    assert chosen is not None and chosen.aim is not None
    share, cost = whole_static_counts(demand, base)
    assert share[-1] >= chosen.aim  # some static count meets the aim
    # With the quantiles and 1.25x / 1.5x the peak only, the tuner held 16 replicas here where
    # 13 met its aim on the same replay (1.23x the cost).
    assert chosen.cost <= float(cost[share >= chosen.aim].min())


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_forecast_jobs_and_a_standby_for_the_unscheduled_one_beat_any_static_count(seed: int) -> None:
    """Scheduled batch jobs the forecast sees, and one unscheduled job a day it cannot: the
    cheapest margin is the forecast plus a standby the size of a job, not a static count sized
    for a job on top of a job. Found on a batch-job trace: with standbys of 0-3 replicas only,
    the tuner held a static count where the forecast plus a job's worth met its aim for less
    (here, before: 0.90x, 0.97x and 1.03x the cheapest static count meeting the aim)."""
    rng = np.random.default_rng(seed)
    n = 14 * DAY
    interactive = rng.poisson(10.0, n).astype(np.float64)
    jobs = np.zeros(n)
    for d in range(14):
        for at in (2 * 60, 10 * 60, 16 * 60):
            jobs[d * DAY + at:d * DAY + at + 60] = 150.0
    unscheduled = np.zeros(n)
    for d in range(14):
        start = d * DAY + int(rng.integers(0, DAY - 40))
        unscheduled[start:start + 40] = 150.0
    demand = interactive + jobs + unscheduled
    base = 10.0 + jobs  # the forecast: the interactive mean and the jobs on the schedule
    chosen = tune(demand, base, SPEC, target=0.99, step_seconds=STEP)
    assert chosen is not None and chosen.aim is not None and chosen.expected is not None
    assert chosen.expected >= chosen.aim and chosen.forecast
    assert chosen.cap == math.inf and chosen.extra >= 150.0  # a job's worth on top of the forecast
    share, cost = whole_static_counts(demand, base)
    assert chosen.cost < 0.75 * float(cost[share >= chosen.aim].min())


def storm(days: int = 14) -> tuple[np.ndarray, int]:
    """A trace whose last six days each have a burst at 2x its peak, and one burst at 5x two
    days back (an outlier: over 1.5x anything else replayed, and over 2.25x the bursts after
    it, which are then not part of it); and where the outlier starts."""
    demand = demand_trace(days, cv=0.1, seed=2)
    peak = demand.max()
    for back in range(1, 7):
        at = len(demand) - back * DAY + 600 + 37 * back
        demand[at:at + 20] = 2.0 * peak
    outlier = len(demand) - 2 * DAY - 300
    demand[outlier:outlier + 20] = 5.0 * peak
    return demand, outlier


def test_capped_outlier_caps_only_the_burst_at_room_over_the_rest() -> None:
    """The outlier's steps at 1.5x the highest demand replayed outside it; every other step as
    it was; nothing to size it against (all missing): as it was."""
    demand, at = storm()
    burst = slo.outlier_burst(demand, step_seconds=STEP)
    assert burst is not None
    capped = slo.capped_outlier(demand, burst, step_seconds=STEP)
    rest = np.delete(demand, np.arange(at, at + 20))
    assert capped[at:at + 20] == pytest.approx(np.full(20, slo.ONE_OFF_PEAK * rest.max()))
    assert np.array_equal(np.delete(capped, np.arange(at, at + 20)), rest)
    gone = np.full_like(demand, np.nan)
    gone[at:at + 20] = demand[at:at + 20]
    assert np.array_equal(slo.capped_outlier(gone, burst, step_seconds=STEP), gone, equal_nan=True)


def test_spent_without_the_outlier_when_the_other_bursts_spend_the_week() -> None:
    good = (1.0, 10_000.0)
    burst = hours_ago(49.5, 48.2)  # entries 49 and 48 back
    # Six other late hours, 3,000 late each: 18,000 > 70 % of the week's 16,800 budget.
    recurring = [good] * 168
    for back in (150, 120, 100, 80, 30, 10):
        recurring[-back] = (0.7, 10_000.0)
    recurring[-49] = recurring[-48] = (0.3, 10_000.0)
    assert slo.spent_without(tuple(recurring), 0.99, burst)
    # The same outlier hours with one other late hour: the week is spent by the outlier.
    once = [good] * 168
    once[-10] = (0.7, 10_000.0)
    once[-49] = once[-48] = (0.3, 10_000.0)
    assert not slo.spent_without(tuple(once), 0.99, burst)


def test_retune_replays_an_outlier_capped_in_a_week_of_recurring_bursts() -> None:
    """Spent by bursts that recur, with one far above them: the hourly choice is the one the
    capped replay gives (what ``tune`` picks there), cheaper than covering the outlier's size
    (found on a storm: 19-20 replicas held for four days where 6 covered the later bursts).
    Spent, but not without the outlier (its first burst after a calm week): not capped."""
    demand, _ = storm()
    nan = np.full_like(demand, np.nan)
    burst = slo.outlier_burst(demand, step_seconds=STEP)
    assert burst is not None
    good = (1.0, 10_000.0)
    recurring = [good] * 167  # retune adds this hour's entry, so the late hours sit one further back
    for back in (150, 120, 100, 80, 30, 10):
        recurring[-back] = (0.7, 10_000.0)
    lo = len(recurring) - 1 - int(burst.began // 3600)
    recurring[lo] = recurring[lo + 1] = (0.3, 10_000.0)
    state = retune(TunerState(recent=tuple(recurring)), now=0.0, demand=demand, base=nan, spec=SPEC,
                   target=0.99, on_time=1.0, requests=10_000.0, step_seconds=STEP)
    assert state.spent and state.outlier_capped and not state.one_off
    capped = tune(slo.capped_outlier(demand, burst, step_seconds=STEP), nan, SPEC, target=0.99,
                  step_seconds=STEP, spent=True)
    whole = tune(demand, nan, SPEC, target=0.99, step_seconds=STEP, spent=True)
    assert capped is not None and whole is not None
    assert state.margin == capped and capped != whole
    level = float(np.median(demand))
    assert capped.need(level, level) < whole.need(level, level)
    # Its first burst after a calm week, with as many late requests spread over the days before
    # it (under 70 % of the budget on their own): spent, but by the outlier, so not capped.
    first = [good] * 167
    first[-150] = first[-120] = (0.7, 10_000.0)
    first[lo] = first[lo + 1] = (0.3, 10_000.0)
    first[lo + 10] = (0.6, 10_000.0)  # an hour missing again after it: no one-off
    opening = retune(TunerState(recent=tuple(first)), now=0.0, demand=demand, base=nan, spec=SPEC,
                     target=0.99, on_time=1.0, requests=10_000.0, step_seconds=STEP)
    assert opening.spent and not opening.outlier_capped
