import pytest

from scaler.core.forecasts import demotion_note, fit_horizon_steps, forecast_steps


@pytest.mark.parametrize(("lead", "step", "steps"), [(630, 60, 11), (600, 600, 1), (1, 600, 1), (0, 60, 1)])
def test_fit_horizon_steps(lead, step, steps) -> None:
    assert fit_horizon_steps(lead, step) == steps


@pytest.mark.parametrize(
    ("origin", "now", "horizon", "step", "steps"),
    [(0, 240, 1200, 300, 6), (0, 0, 600, 60, 11), (0, 0, 0, 60, 1), (600, 0, 60, 60, 1)],
)
def test_forecast_steps_cover_now_plus_horizon(origin, now, horizon, step, steps) -> None:
    h = forecast_steps(origin=origin, now=now, horizon_seconds=horizon, step_seconds=step)
    assert h == steps
    assert origin + (h - 1) * step >= now + horizon - step  # the step holding now + horizon is in


@pytest.mark.parametrize(("skill", "demoted"), [(None, False), (0.4, False), (0.999, False), (1.0, True), (1.7, True)])
def test_demotion(skill, demoted) -> None:
    note = demotion_note("ets", skill, 1.0)
    assert (note is not None) == demoted
    if demoted:
        assert "ets" in note and "maxSkill 1" in note
