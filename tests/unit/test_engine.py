"""The engine with a real forecaster (thread pool here; a process pool in serve) and a fake source."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
import pytest

from forecasting.types import Series
from scaler.core.model import Reason
from scaler.core.slo import describe
from tests.support.harness import T0, FakeSource, Harness, settings_from_yaml, start_harness

CONFIG = """
replay: {}
defaults: {refreshInterval: 15s, step: 10m, history: 7d, staleAfter: 10m, coldStart: {initial: 20m}, seasonality: [1d]}
models:
  - {name: chat, capacityPerReplica: 10, maxReplicas: 50}
"""


def daily(days: int = 7, step: int = 600) -> Series:
    t = np.arange(days * 86400 // step) * step
    values = 50 + 40 * np.sin(2 * np.pi * t / 86400)
    return Series(start=T0 - days * 86400, step_seconds=step, values=values)


async def test_backfill_refit_and_forecast_driven_decisions() -> None:
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": daily()})
    with ThreadPoolExecutor(1) as pool:
        h = await start_harness(settings_from_yaml(CONFIG), source, fit_executor=pool)
        try:
            await h.engine.backfill()
            await h.engine.refit()
            await h.step(15)
            snap = h.holder.current
            assert snap.fits["chat"].skill is not None and not snap.fits["chat"].demoted
            d = snap.decisions["chat"]
            # at T0 (midnight) the sine rises: the p90 over the next ~20 min exceeds demand now
            assert d.forecast_replicas is not None and d.forecast_replicas >= d.reactive_replicas
            assert d.lead_seconds == 20 * 60 + 30
            assert "chat" in snap.forecasts and snap.forecasts["chat"].origin <= snap.at
            # the forecast made one lead ago for now appears once that time has come
            for _ in range(int(d.lead_seconds // 60) + 2):
                await h.step(60)
            assert "chat" in h.holder.current.forecast_for_now
            assert h.registry.get_sample_value("prewarm_forecast_for_now_demand", {"model": "chat"}) is not None
        finally:
            await h.close()


class FailingPool:
    def submit(self, fn, *args, **kwargs):
        future: Future[object] = Future()
        future.set_exception(RuntimeError("worker died"))
        return future

    def shutdown(self, wait: bool = True, **kwargs) -> None:
        return None


async def test_failed_fit_is_counted_and_decisions_stay_reactive() -> None:
    source = FakeSource(demand={"chat": 35.0}, history_values={"chat": daily()})
    h = await start_harness(settings_from_yaml(CONFIG), source, fit_executor=FailingPool())
    try:
        await h.engine.backfill()
        await h.engine.refit()
        await h.step(15)
        assert h.engine.stats.fit_errors == 1
        # Past the 10-minute stabilization that recalls the backfilled last step (48 -> 5).
        await h.step(600)
        d = h.holder.current.decisions["chat"]
        assert (d.replicas, d.reason) == (4, Reason.REACTIVE) and "no forecaster fitted yet" in d.message
    finally:
        await h.close()


async def test_source_failure_is_counted_and_history_retried() -> None:
    source = FakeSource(demand={"chat": 35.0}, fail="http_5xx")
    h = await start_harness(settings_from_yaml(CONFIG), source)
    try:
        await h.engine.backfill()
        await h.step(15)
        assert h.engine.stats.source_errors == {"http_5xx": 2}
        assert not h.holder.current.decisions["chat"].valid
        source.fail = None
        await h.engine.backfill()
        assert h.engine.models["chat"].backfilled
        await h.step(15)
        assert h.holder.current.decisions["chat"].replicas == 4
    finally:
        await h.close()


async def test_reload_keeps_learned_state_and_adds_models() -> None:
    h = await start_harness(settings_from_yaml(CONFIG), FakeSource(demand={"chat": 35.0, "code": 5.0}))
    try:
        await h.step(15)
        runtime = h.engine.models["chat"]
        new = settings_from_yaml(CONFIG.replace("maxReplicas: 50}", "maxReplicas: 3}\n  - {name: code, capacityPerReplica: 1}"))
        h.engine.apply_settings(new)
        assert h.engine.models["chat"] is runtime and "code" in h.engine.models
        await h.step(15)
        decisions = h.holder.current.decisions
        assert decisions["chat"].replicas == 3 and decisions["chat"].reason is Reason.MAX
        assert decisions["code"].replicas == 5
    finally:
        await h.close()


class SlowSource(FakeSource):
    """Blocks in observe until the test lets it go: a slow Prometheus during a config reload."""

    def __init__(self, demand: dict[str, float | None]) -> None:
        super().__init__(demand=demand)
        import threading

        self.reading, self.release = threading.Event(), threading.Event()

    def observe(self, models, *, now):  # type: ignore[no-untyped-def]
        self.reading.set()
        self.release.wait(10)
        return super().observe(models, now=now)


async def test_a_model_removed_while_a_refresh_reads_does_not_lose_the_refresh() -> None:
    import asyncio

    two = CONFIG.replace("maxReplicas: 50}", "maxReplicas: 50}\n  - {name: code, capacityPerReplica: 1}")
    source = SlowSource({"chat": 35.0, "code": 5.0})
    source.release.set()
    h = await start_harness(settings_from_yaml(two), source)
    try:
        await h.step(15)
        source.release.clear()
        source.reading.clear()
        h.clock.step(15)
        refresh = asyncio.create_task(h.engine.refresh())
        await asyncio.to_thread(source.reading.wait, 10)
        h.engine.apply_settings(settings_from_yaml(CONFIG))  # `code` leaves the config mid-read
        source.release.set()
        snap = await refresh  # before the fix: KeyError('code'), and the refresh lost for every model
        assert set(snap.decisions) == {"chat"} and snap.decisions["chat"].replicas == 4
        assert snap.settings.model_names == ("chat",)
    finally:
        source.release.set()
        await h.close()


SLO_CONFIG = CONFIG.replace("maxReplicas: 50}", "maxReplicas: 50, slo: {onTime: 0.9}}")


async def test_a_scaledobject_asking_its_own_on_time_target_gets_a_margin_tuned_for_it() -> None:
    from scaler.core.config import Overrides

    smooth = daily()
    values = smooth.values.copy()
    values[::7] *= 1.8  # bursts the 0.999 target must cover and 0.9 may leave late
    bursty = Series(start=smooth.start, step_seconds=smooth.step_seconds, values=values)
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": bursty})
    with ThreadPoolExecutor(1) as pool:
        h = await start_harness(settings_from_yaml(SLO_CONFIG), source, fit_executor=pool)
        try:
            await h.engine.backfill()
            await h.step(15)
            strict = Overrides(sloOnTime=0.999)
            h.engine.finish("chat", strict)
            await h.step(15)
            await h.engine.retune(h.clock.now())
            await h.step(15)
            snap = h.holder.current
            own, asked = snap.decisions["chat"], snap.answer("chat", strict)
            assert asked is not None and asked.valid
            assert own.slo_target == 0.9 and asked.slo_target == 0.999  # decided with the asked target
            runtime = h.engine.models["chat"]
            track = runtime.targets[0.999]
            assert track.tuner.tuned_at is not None and runtime.tuner.tuned_at is not None
            assert track.tuner.margin.aim > runtime.tuner.margin.aim  # tuned for its own, stricter target
            assert asked.replicas >= own.replicas
            assert snap.final_decisions()["chat"].replicas == max(own.replicas, asked.replicas)
        finally:
            await h.close()


@asynccontextmanager
async def slo_engine(signals: dict[str, float]) -> AsyncIterator[tuple[Harness, FakeSource]]:
    """An engine on SLO_CONFIG, backfilled and past its first decision, whose source reports
    ``signals`` for the model (the SLO histogram's readings)."""
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": daily()}, signals={"chat": signals})
    with ThreadPoolExecutor(1) as pool:
        h = await start_harness(settings_from_yaml(SLO_CONFIG), source, fit_executor=pool)
        try:
            await h.engine.backfill()
            await h.step(15)
            yield h, source
        finally:
            await h.close()


async def test_the_tuner_weighs_the_measured_share_by_the_requests_behind_it() -> None:
    """serve feeds the tuner vLLM's share with its request count (``slo_requests``): the week's
    error budget is counted in requests (docs/SLO.md). One hour of 1,080 late is not 70 % of the
    10 % budget of a week of such hours (14,112 of 20,160): one bad hour after a start is not
    a spent week."""
    async with slo_engine({"slo_on_time_ratio": 0.1, "slo_requests": 1200.0}) as (h, _):
        await h.engine.retune(h.clock.now())
        tuner = h.engine.models["chat"].tuner
        assert tuner.recent == ((0.1, 1200.0),)
        assert not tuner.spent and tuner.margin.aim == 0.95


async def test_the_published_snapshot_carries_the_margin_the_tuner_uses() -> None:
    """`/explain` shows the margin term by term from the snapshot: it must be the tuner's own."""
    async with slo_engine({"slo_on_time_ratio": 0.999, "slo_requests": 1000.0}) as (h, _):
        await h.engine.retune(h.clock.now())
        await h.step(15)
        margin = h.engine.models["chat"].tuner.margin
        assert margin.expected is not None  # tuned, not the starting margin
        assert h.holder.current.margins == {"chat": margin}
        assert h.holder.current.budgets == {"chat": "calm"}  # and how the week's budget stands


async def test_the_tuner_tells_the_log_when_it_changes_its_mind(caplog: pytest.LogCaptureFixture) -> None:
    """An SRE reads in serve's log when the margin changes and why: a new margin with what the
    replay expects of it, and a week whose error budget is spent."""
    async with slo_engine({"slo_on_time_ratio": 0.999, "slo_requests": 1000.0}) as (h, source):
        with caplog.at_level(logging.INFO, logger="prewarm.engine"):
            await h.engine.retune(h.clock.now())
        runtime = h.engine.models["chat"]
        # The margin read out as `prewarm explain` reads it out.
        said = describe(runtime.tuner.margin.terms(10.0))
        assert f"SLO tuner of chat (target 0.9): new margin {said} (" in caplog.text
        assert "aim 0.9500" in caplog.text
        runtime.tuner = dataclasses.replace(runtime.tuner, recent=((0.5, 1000.0),) * 167)
        source.signals = {"chat": {"slo_on_time_ratio": 0.5, "slo_requests": 1000.0}}
        await h.step(3600)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="prewarm.engine"):
            await h.engine.retune(h.clock.now())
        assert runtime.tuner.spent
        assert "the week's error budget is spent: re-choosing the margin hourly" in caplog.text
        await h.step(15)
        assert h.holder.current.budgets == {"chat": "spent"}  # `prewarm explain` says so


async def test_a_share_not_read_again_is_not_fed_to_the_tuner_twice() -> None:
    """The last share stays on show while the histogram is gone, but the next retune sees it as
    missing: the week's record holds instead of counting the old share again."""
    async with slo_engine({"slo_on_time_ratio": 0.8, "slo_requests": 600.0}) as (h, source):
        await h.engine.retune(h.clock.now())
        first = h.engine.models["chat"].tuner
        assert first.recent == ((0.8, 600.0),)
        source.signals = {}
        await h.step(3600)
        await h.engine.retune(h.clock.now())
        held = h.engine.models["chat"].tuner
        assert held.tuned_at > first.tuned_at  # it did retune
        assert held.recent == first.recent and held.spent == first.spent
        assert h.holder.current.decisions["chat"].on_time == 0.8  # still shown
        source.signals = {"chat": {"slo_on_time_ratio": 1.0, "slo_requests": 600.0}}
        await h.step(3600)
        await h.engine.retune(h.clock.now())
        assert h.engine.models["chat"].tuner.recent == ((0.8, 600.0), (1.0, 600.0))


async def test_an_idle_hour_is_recorded_as_an_hour_without_requests() -> None:
    """The histogram read with nothing finished (``slo_requests`` 0, no share) is an idle hour,
    not missing data: the week's record gets an hour of no requests (so it stays seven days long
    on a model idle at night), and the share on show stays the last one measured."""
    async with slo_engine({"slo_on_time_ratio": 0.8, "slo_requests": 600.0}) as (h, source):
        await h.engine.retune(h.clock.now())
        source.signals = {"chat": {"slo_requests": 0.0}}
        await h.step(3600)
        await h.engine.retune(h.clock.now())
        assert h.engine.models["chat"].tuner.recent == ((0.8, 600.0), (1.0, 0.0))
        assert h.holder.current.decisions["chat"].on_time == 0.8
        source.signals = {}  # the histogram gone: missing, records nothing
        await h.step(3600)
        await h.engine.retune(h.clock.now())
        assert h.engine.models["chat"].tuner.recent == ((0.8, 600.0), (1.0, 0.0))


async def test_a_restarted_tuner_recalls_idle_hours_too() -> None:
    week = [(T0 - (168 - i) * 3600.0, 0.97 if i % 2 else None, 1000.0 if i % 2 else 0.0) for i in range(168)]
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": daily()},
                        on_time_values={"chat": week})
    h = await start_harness(settings_from_yaml(SLO_CONFIG), source)
    try:
        await h.engine.backfill()
        assert h.engine.models["chat"].tuner.recent == ((1.0, 0.0), (0.97, 1000.0)) * 84
    finally:
        await h.close()


def test_slo_on_time_override_needs_an_slo_in_the_config() -> None:
    import pytest

    from scaler.core.config import parse_overrides
    from scaler.core.errors import MetadataError

    plain = settings_from_yaml(CONFIG).models[0]
    with pytest.raises(MetadataError, match="sloOnTime: model 'chat' has no `slo`"):
        parse_overrides({"sloOnTime": "0.999"}, plain)
    with_slo = settings_from_yaml(SLO_CONFIG).models[0]
    assert parse_overrides({"sloOnTime": "0.999"}, with_slo).sloOnTime == 0.999
    with pytest.raises(MetadataError, match="sloOnTime"):
        parse_overrides({"sloOnTime": "1.5"}, with_slo)


async def test_a_restarted_engine_recalls_the_peak_it_would_still_hold() -> None:
    """A rolling update restarts prewarm just after a burst: the backfilled last step (200, 20
    replicas) is inside the 10-minute scale-down stabilization, so the first answer holds it
    instead of dropping to demand now (50, 5 replicas) - what the old pod would have answered."""
    values = daily().values.copy()
    values[-1] = 200.0
    history = Series(start=daily().start, step_seconds=600, values=values)
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": history})
    h = await start_harness(settings_from_yaml(CONFIG), source)
    try:
        await h.engine.backfill()
        await h.step(15)
        d = h.holder.current.decisions["chat"]
        assert d.reactive_replicas == 5
        assert d.replicas == 20 and d.reason == Reason.STABILIZATION
        # Once the recalled step leaves the window, demand now decides again.
        await h.step(600)
        assert h.holder.current.decisions["chat"].replicas == 5
    finally:
        await h.close()


async def test_a_restarted_tuner_recalls_its_week_of_measured_shares() -> None:
    """A rolling update must not forget a spent error budget: at backfill the tuner reads the
    last week's hourly on-time shares back from the source (Prometheus keeps vLLM's histogram)."""
    week = [(T0 - (168 - i) * 3600.0, 0.97, 1000.0) for i in range(200)]  # also older and later ones
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": daily()},
                        on_time_values={"chat": week})
    with ThreadPoolExecutor(1) as pool:
        h = await start_harness(settings_from_yaml(SLO_CONFIG), source, fit_executor=pool)
        try:
            await h.engine.backfill()
            tuner = h.engine.models["chat"].tuner
            assert tuner.recent == ((0.97, 1000.0),) * 168
            # Against 0.9 the week is calm (0.97 > 0.95); the first retune records on top of it.
            await h.engine.retune(h.clock.now())
            assert len(h.engine.models["chat"].tuner.recent) == 168
        finally:
            await h.close()


async def test_a_failed_recall_starts_a_new_week_and_keeps_the_demand_history() -> None:
    source = FakeSource(demand={"chat": 50.0}, history_values={"chat": daily()}, on_time_fail="timeout")
    h = await start_harness(settings_from_yaml(SLO_CONFIG), source)
    try:
        await h.engine.backfill()
        rt = h.engine.models["chat"]
        assert rt.backfilled and rt.history.completed(h.clock.now()) is not None
        assert rt.tuner.recent == ()
        assert h.engine.stats.source_errors == {"timeout": 1}
    finally:
        await h.close()


def test_the_log_says_when_the_tuner_replays_an_outlier_capped(caplog: pytest.LogCaptureFixture) -> None:
    """An SRE reads why the spent week's margin is leaner than the outlier: once, when it starts."""
    from scaler.core.slo import TunerState
    from scaler.engine import _log_tuning

    spent = TunerState(spent=True)
    capped = dataclasses.replace(spent, outlier_capped=True)
    with caplog.at_level(logging.INFO, logger="prewarm.engine"):
        _log_tuning("chat", 0.99, spent, capped, capacity=10.0)
        _log_tuning("chat", 0.99, capped, capped, capacity=10.0)
    said = "one went far above the rest; the hourly choice replays that one capped at 1.5x"
    assert caplog.text.count(said) == 1
