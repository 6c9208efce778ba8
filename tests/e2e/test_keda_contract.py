"""The real gRPC server, driven over a real socket by a KEDA-faithful client (fake clock and source)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from forecasting.types import Forecast
from scaler.core.model import Reason
from scaler.snapshot import FitInfo
from tests.support.harness import FakeSource, settings_from_yaml, start_harness
from tests.support.keda_client import (
    KedaClient,
    ScaledObjectSim,
    hpa_desired,
    keda_value,
    stream_is_active_with_backoff,
)

CONFIG = """
replay: {}
defaults: {refreshInterval: 15s, staleAfter: 2m, scaleDown: {stabilization: 5m}, coldStart: {initial: 10m}}
models:
  - {name: llama, capacityPerReplica: 10, minReplicas: 0, maxReplicas: 20}
  - {name: mistral, capacityPerReplica: 4, minReplicas: 1, maxReplicas: 8, standbyReplicas: 1}
"""


@pytest.fixture
async def harness():
    h = await start_harness(settings_from_yaml(CONFIG), FakeSource(demand={"llama": 35.0, "mistral": 0.0}))
    await h.engine.refresh()
    yield h
    await h.close()


async def test_poll_cycle_gives_exact_replicas(harness) -> None:
    poll = await KedaClient(harness.channel, "llama").poll()
    assert poll.error is None
    assert poll.metric_names == ["prewarm-llama"]
    assert poll.targets == [1.0]
    assert poll.values == [4.0]  # ceil(35 / 10)
    assert poll.active is True


async def test_int_and_float_fields_agree(harness) -> None:
    client = KedaClient(harness.channel, "llama")
    spec = await client.stub.GetMetricSpec(client.ref)
    assert [(s.targetSize, s.targetSizeFloat) for s in spec.metricSpecs] == [(1, 1.0)]
    from scaler._pb import externalscaler_pb2 as pb

    answer = await client.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=client.ref, metricName="prewarm-llama"))
    assert len(answer.metricValues) == 1
    assert (answer.metricValues[0].metricValue, answer.metricValues[0].metricValueFloat) == (4, 4.0)


async def test_zero_is_sent_in_both_fields_and_inactive(harness) -> None:
    harness.source.demand["llama"] = 0.0
    await harness.step(600)  # past the stabilization window
    client = KedaClient(harness.channel, "llama")
    from scaler._pb import externalscaler_pb2 as pb

    answer = await client.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=client.ref, metricName="prewarm-llama"))
    value = answer.metricValues[0]
    assert (value.metricValue, value.metricValueFloat) == (0, 0.0)
    assert (await client.poll()).active is False


async def test_hpa_turns_value_into_that_many_replicas(harness) -> None:
    sim = ScaledObjectSim(min_replica_count=0, max_replica_count=20, tolerance=0.0)
    client = KedaClient(harness.channel, "llama")
    assert sim.apply(await client.poll()) == 1  # from zero: activation -> 1
    assert sim.apply(await client.poll()) == 4  # then the HPA applies ceil(4 / 1)


def test_hpa_tolerance_dead_band_swallows_small_steps() -> None:
    assert hpa_desired(10, 9.0, 1.0, tolerance=0.1) == 10  # 9 at 10 replicas: ignored
    assert hpa_desired(10, 9.0, 1.0, tolerance=0.0) == 9  # behavior tolerance 0: exact
    assert hpa_desired(10, 12.0, 1.0, tolerance=0.1) == 12
    assert keda_value(0.0, 3) == 3.0 and keda_value(float("nan"), 0) == 0.0 and keda_value(2.0004, 9) == 2.0


async def test_standby_and_min_bounds(harness) -> None:
    poll = await KedaClient(harness.channel, "mistral").poll()
    assert poll.values == [1.0]  # no demand: min 1 (standby only rides on a real need)
    harness.source.demand["mistral"] = 9.0
    await harness.step()
    assert (await KedaClient(harness.channel, "mistral").poll()).values == [4.0]  # ceil(9/4)=3 + 1 standby


@pytest.mark.parametrize(
    ("metadata", "value"),
    [
        pytest.param({"minReplicas": "6"}, 6.0, id="min-override"),
        pytest.param({"maxReplicas": "2"}, 2.0, id="max-override"),
        pytest.param({"standbyReplicas": "3"}, 7.0, id="standby-override"),
        pytest.param({"unknownKey": "x", "enableTLS": "false", "minReplicas": ""}, 4.0, id="unknown-keys-ignored"),
    ],
)
async def test_trigger_overrides(harness, metadata, value) -> None:
    poll = await KedaClient(harness.channel, "llama", extra_metadata=metadata).poll()
    assert poll.error is None and poll.values == [value]


@pytest.mark.parametrize(
    ("model", "metadata", "code", "needle"),
    [
        pytest.param(None, {}, grpc.StatusCode.INVALID_ARGUMENT, "'model' is required", id="missing"),
        pytest.param("", {}, grpc.StatusCode.INVALID_ARGUMENT, "'model' is required", id="empty"),
        pytest.param("gpt-9", {}, grpc.StatusCode.NOT_FOUND, "known models: llama, mistral", id="unknown"),
        pytest.param('x"}or vector(1)#', {}, grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name", id="promql-injection"),
        pytest.param("a" * 10_000, {}, grpc.StatusCode.INVALID_ARGUMENT, "...", id="huge"),
        pytest.param("../etc/passwd", {}, grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name", id="path"),
        pytest.param("llama\nmistral", {}, grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name", id="newline"),
        pytest.param("Llama", {}, grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name", id="uppercase"),
        pytest.param("llama", {"maxReplicas": "ten"}, grpc.StatusCode.INVALID_ARGUMENT, "maxReplicas: 'ten' is not a whole number", id="bad-override"),
        pytest.param("llama", {"minReplicas": "30"}, grpc.StatusCode.INVALID_ARGUMENT, "maxReplicas: 20 must be >= minReplicas (30)", id="crossed-override"),
        pytest.param("llama", {"standbyReplicas": "-1"}, grpc.StatusCode.INVALID_ARGUMENT, "standbyReplicas: -1, must be in [0; 1000]", id="negative-override"),
    ],
)
async def test_bad_refs_get_clear_codes(harness, model, metadata, code, needle) -> None:
    client = KedaClient(harness.channel, model, extra_metadata=metadata)
    poll = await client.poll()
    assert poll.error == code
    assert needle in poll.message
    assert len(poll.message) < 400  # a hostile name is never echoed whole
    # the server still serves good requests afterwards
    assert (await KedaClient(harness.channel, "llama").poll()).error is None


async def test_wrong_metric_name_is_rejected(harness) -> None:
    from scaler._pb import externalscaler_pb2 as pb

    client = KedaClient(harness.channel, "llama")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=client.ref, metricName="prewarm-mistral"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_missing_data_holds_then_fails_unavailable_never_zero(harness) -> None:
    client = KedaClient(harness.channel, "llama")
    assert (await client.poll()).values == [4.0]
    harness.source.fail = "unreachable"
    for _ in range(7):  # 105 s < staleAfter 120 s: hold
        await harness.step(15)
        poll = await client.poll()
        assert poll.values == [4.0]
        assert harness.holder.current.decisions["llama"].reason is Reason.HOLD
    await harness.step(30)  # 135 s: stale
    poll = await client.poll()
    assert poll.error == grpc.StatusCode.UNAVAILABLE
    assert "no usable demand data" in poll.message
    # KEDA's fallback takes over after failureThreshold consecutive failures
    sim = ScaledObjectSim(replicas=4, fallback_threshold=2, fallback_replicas=6)
    for _ in range(3):
        sim.apply(await client.poll())
    assert sim.replicas == 6
    # the source comes back: correct answers at the next refresh
    harness.source.fail = None
    harness.source.demand["llama"] = 51.0
    await harness.step(15)
    assert (await client.poll()).values == [6.0]


async def test_missing_model_sample_holds(harness) -> None:
    harness.source.demand["llama"] = None
    await harness.step(15)
    assert (await KedaClient(harness.channel, "llama").poll()).values == [4.0]


async def test_stale_snapshot_expires_even_if_the_loop_stops(harness) -> None:
    harness.clock.step(121)  # no refresh ran: the handler itself notices
    poll = await KedaClient(harness.channel, "llama").poll()
    assert poll.error == grpc.StatusCode.UNAVAILABLE and "stale" in poll.message


async def test_before_first_refresh_answers_unavailable_not_zero() -> None:
    h = await start_harness(settings_from_yaml(CONFIG), FakeSource(demand={"llama": 5.0}))
    try:
        poll = await KedaClient(h.channel, "llama").poll()
        assert poll.error == grpc.StatusCode.UNAVAILABLE
        spec = await KedaClient(h.channel, "llama").stub.GetMetricSpec(KedaClient(h.channel, "llama").ref)
        assert spec.metricSpecs[0].metricName == "prewarm-llama"  # the spec always answers
    finally:
        await h.close()


def _ramp_forecast(origin: float, *, peak_at: float, peak: float) -> Forecast:
    times = origin + 60.0 * np.arange(120)
    mean = np.where(times >= peak_at, peak, 0.0)
    return Forecast(origin=origin, step_seconds=60, mean=mean, quantiles={0.9: mean * 1.1})


class _FixedFitted:
    """A fitted forecaster stand-in that always forecasts the same ramp."""

    name = "fixed"
    skill = 0.5
    reason = "test"
    step_seconds = 60

    def __init__(self, forecast: Forecast) -> None:
        self._forecast = forecast
        self.end = forecast.origin

    def update(self, new):
        return self

    def forecast(self, h: int) -> Forecast:
        return self._forecast


def _install_forecast(h, model: str, forecast: Forecast) -> None:
    rt = h.engine.models[model]
    rt.fitted = _FixedFitted(forecast)
    rt.fit = FitInfo("fixed", 0.5, "test", h.clock.now(), 0.0, demoted=False)


async def test_predictive_wake_up_from_zero_and_stream(harness) -> None:
    """Idle model, demand forecast 8 minutes ahead (lead 10m30s): IsActive turns true now."""
    harness.source.demand["llama"] = 0.0
    await harness.step(600)
    client = KedaClient(harness.channel, "llama")
    assert (await client.poll()).active is False

    messages: list[bool] = []
    woke = asyncio.Event()

    async def on_message(active: bool) -> bool:
        messages.append(active)
        if active:
            woke.set()
            return False
        return True

    stream = asyncio.create_task(stream_is_active_with_backoff(client, on_message, sleep=asyncio.sleep))
    await asyncio.sleep(0.2)
    assert messages == [False]  # current state at once
    now = harness.clock.now()
    _install_forecast(harness, "llama", _ramp_forecast(now, peak_at=now + 480, peak=25.0))
    await harness.step(15)
    await asyncio.wait_for(woke.wait(), 5)
    assert messages[-1] is True
    await stream
    poll = await client.poll()
    assert poll.active is True and poll.values == [3.0]  # ceil(25 * 1.1 / 10)
    assert harness.holder.current.decisions["llama"].reason is Reason.FORECAST


async def test_demoted_forecast_is_not_used(harness) -> None:
    now = harness.clock.now()
    _install_forecast(harness, "llama", _ramp_forecast(now, peak_at=now, peak=200.0))
    harness.engine.models["llama"].fit = FitInfo("fixed", 1.3, "test", now, 0.0, demoted=True)
    await harness.step(15)
    d = harness.holder.current.decisions["llama"]
    assert d.replicas == 4 and "demoted" in d.message


async def test_stream_is_active_ends_ok_on_shutdown_and_backoff_resets(harness) -> None:
    client = KedaClient(harness.channel, "llama")
    seen: list[bool] = []

    async def on_message(active: bool) -> bool:
        seen.append(active)
        return True

    async def no_sleep(_: float) -> None:
        return None

    task = asyncio.create_task(stream_is_active_with_backoff(client, on_message, sleep=no_sleep, max_connects=1))
    await asyncio.sleep(0.2)
    await harness.holder.close()  # what SIGTERM does first
    delays = await asyncio.wait_for(task, 5)
    assert seen[0] is True
    assert delays == [0.0]  # ended with OK: KEDA resets its backoff


async def test_stream_reconnect_backoff_on_errors(harness) -> None:
    client = KedaClient(harness.channel, "unknown-model")
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def on_message(active: bool) -> bool:
        return True

    await stream_is_active_with_backoff(client, on_message, sleep=record, max_connects=6)
    assert slept == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]


async def test_stream_metric_spec_matches_get_metric_spec(harness) -> None:
    client = KedaClient(harness.channel, "llama")
    call = client.stub.StreamMetricSpec(client.ref)
    first = await call.read()
    call.cancel()
    assert first == await client.stub.GetMetricSpec(client.ref)


async def test_grpc_metrics_count_codes(harness) -> None:
    await KedaClient(harness.channel, "nope").poll()
    await KedaClient(harness.channel, "llama").poll()
    value = harness.registry.get_sample_value
    assert value("prewarm_grpc_requests_total", {"method": "GetMetricSpec", "code": "NOT_FOUND"}) == 1
    assert value("prewarm_grpc_requests_total", {"method": "GetMetrics", "code": "OK"}) == 1
    assert value("prewarm_desired_replicas", {"model": "llama"}) == 4
    assert value("prewarm_decision_reason", {"model": "llama", "reason": "reactive"}) == 1
