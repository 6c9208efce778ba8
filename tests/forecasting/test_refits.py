"""The budget of fits an offline replay (``forecast-eval``, the backtest) keeps by default."""

from __future__ import annotations

import pytest

from forecasting.eval_cli import budgeted
from forecasting.evaluate import EvalSpec
from forecasting.refits import INTERVALS, MAX_FITS, refit_every


@pytest.mark.parametrize(("days", "hours"), [(14, 6), (120, 6), (121, 8), (160, 8), (161, 12), (240, 12),
                                             (241, 24), (480, 24), (481, 48), (1000, 72)])
def test_the_default_refit_interval_keeps_a_long_span_to_its_fit_budget(days: int, hours: int) -> None:
    every = refit_every(days * 86400.0)
    assert every == hours * 3600.0
    assert days * 86400.0 / every <= MAX_FITS  # the budget holds at every length
    # ... and no shorter interval of the ladder would have kept to it.
    assert all(days * 86400.0 / shorter > MAX_FITS for shorter in INTERVALS if shorter < every)


@pytest.mark.parametrize(("days", "step_s", "every_steps"), [
    (14, 600, 36),      # the shared traces: 6 h, as before the budget
    (365, 1800, 12),    # a year: 91 days evaluated, still 6 h
    (730, 3600, 12),    # two years: 182 days evaluated, 12 h (8 h would be 547 fits)
    (3650, 1800, 96),   # ten years: 2 days
])
def test_forecast_eval_budgets_its_fits_over_the_span_it_evaluates(days: int, step_s: int,
                                                                   every_steps: int) -> None:
    spec = budgeted(EvalSpec(horizon_steps=1), days * 86400 // step_s, step_s)
    assert spec.refit_every_steps == every_steps
    evaluated = int(days * 86400 // step_s * spec.eval_fraction)
    assert evaluated / spec.refit_every_steps <= MAX_FITS + 1  # a fit at the first origin too
