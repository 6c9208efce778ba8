"""Where the late requests came from (``scaler.backtest.misses``): episodes of late minutes, and
whether the history before each one showed demand that high."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.backtest.misses import BEYOND, GAP_MINUTES, KINDS, by_kind, late_episodes

DAY = 1440


def _days(n: int, *, level: float = 10.0) -> np.ndarray:
    return np.full(n * DAY, level)


def _burst(demand: np.ndarray, start: int, minutes: int, height: float) -> None:
    demand[start:start + minutes] = height


def test_no_late_requests_no_episodes() -> None:
    assert late_episodes(_days(3), np.zeros(3 * DAY), slice(DAY, None)) == []


def test_a_burst_that_recurs_at_this_time_of_day_is_within_the_history() -> None:
    demand, late = _days(9), np.zeros(9 * DAY)
    for day in range(9):  # a 09:00 job every day, the same size
        _burst(demand, day * DAY + 540, 20, 30.0)
    late[8 * DAY + 545:8 * DAY + 550] = 100.0
    (episode,) = late_episodes(demand, late, slice(7 * DAY, None))
    assert episode.kind == "within-history"
    assert episode.vs_history == pytest.approx(1.0) and episode.vs_time_of_day == pytest.approx(1.0)
    assert (episode.start, episode.minutes, episode.late, episode.share) == (8 * DAY + 545, 5, 500.0, 1.0)


def test_a_burst_higher_than_any_minute_before_it_is_beyond_the_history() -> None:
    demand, late = _days(9), np.zeros(9 * DAY)
    _burst(demand, 3 * DAY + 600, 30, 30.0)
    _burst(demand, 8 * DAY + 600, 30, 30.0 * BEYOND * 1.5)
    late[8 * DAY + 600:8 * DAY + 610] = 50.0
    (episode,) = late_episodes(demand, late, slice(7 * DAY, None))
    assert episode.kind == "beyond-history"
    assert episode.vs_history == pytest.approx(BEYOND * 1.5)


def test_a_burst_at_an_hour_that_never_had_one_is_beyond_the_time_of_day() -> None:
    demand, late = _days(9), np.zeros(9 * DAY)
    for day in range(9):  # the daily peak at 15:00
        _burst(demand, day * DAY + 900, 60, 30.0)
    _burst(demand, 8 * DAY + 180, 30, 30.0)  # as high, at 03:00
    late[8 * DAY + 180:8 * DAY + 200] = 10.0
    (episode,) = late_episodes(demand, late, slice(7 * DAY, None))
    assert episode.kind == "beyond-time-of-day"
    assert episode.vs_history == pytest.approx(1.0) and episode.vs_time_of_day == pytest.approx(3.0)


def test_episodes_split_at_the_gap_and_come_most_late_first() -> None:
    demand, late = _days(3), np.zeros(3 * DAY)
    late[2 * DAY + 100] = 1.0
    late[2 * DAY + 100 + GAP_MINUTES - 1] = 1.0           # same episode
    late[2 * DAY + 100 + 2 * GAP_MINUTES + 10] = 6.0      # a second one
    late[DAY + 10] = 1000.0                               # before the window: not counted
    first, second = late_episodes(demand, late, slice(2 * DAY, None))
    assert (first.start, first.minutes, first.late, first.share) == (2 * DAY + 100 + 2 * GAP_MINUTES + 10, 1, 6.0, 0.75)
    assert (second.start, second.minutes, second.late, second.share) == (2 * DAY + 100, GAP_MINUTES, 2.0, 0.25)
    shares = by_kind([first, second])
    assert list(shares) == list(KINDS) and sum(shares.values()) == pytest.approx(1.0)


def test_the_verdict_uses_only_what_came_before_the_burst() -> None:
    demand, late = _days(9), np.zeros(9 * DAY)
    _burst(demand, 8 * DAY + 600, 40, 60.0)
    demand[8 * DAY + 590:8 * DAY + 600] = np.linspace(10.0, 55.0, 10)  # its own rise
    late[8 * DAY + 600:8 * DAY + 620] = 5.0
    before = late_episodes(demand, late, slice(7 * DAY, None))
    assert before[0].kind == "beyond-history"  # the rise is not the burst's history
    later = demand.copy()
    later[8 * DAY + 700:] = 500.0  # the future, however high, changes nothing
    assert late_episodes(later, late, slice(7 * DAY, None)) == before


def test_no_demand_before_it_is_beyond_the_history() -> None:
    demand, late = np.zeros(2 * DAY), np.zeros(2 * DAY)
    _burst(demand, DAY + 60, 10, 5.0)
    late[DAY + 60] = 3.0
    (episode,) = late_episodes(demand, late, slice(DAY, None))
    assert (episode.vs_history, episode.vs_time_of_day, episode.kind) == (None, None, "beyond-history")
