"""A KEDA-faithful ExternalScaler client for tests (behaviour of KEDA v2.20, see KEDA_CONTRACT.md).

What it reproduces: the poll cycle (GetMetricSpec, then GetMetrics per spec, then IsActive), the
value rules (float if > 0 else int; 3 decimals; NaN/Inf/negative -> 0), the HPA AverageValue math
with its tolerance dead-band, min/max clamping, the fallback counter, and StreamIsActive's
reconnect backoff (2 s doubling to 60 s, reset only after the server ends the stream with OK).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import grpc

from scaler._pb import externalscaler_pb2 as pb
from scaler._pb import externalscaler_pb2_grpc as pb_grpc


def keda_value(float_value: float, int_value: int) -> float:
    """KEDA 2.20: the float if > 0 else the int; rounded to 3 decimals; NaN/Inf/negative -> 0."""
    value = float_value if float_value > 0 else float(int_value)
    if not math.isfinite(value) or value < 0:
        return 0.0
    return round(value, 3)


def hpa_desired(current: int, value: float, target: float, *, tolerance: float = 0.1) -> int:
    """Kubernetes HPA, AverageValue: ceil(value / target) unless within the tolerance dead-band."""
    if current > 0 and abs(value / (target * current) - 1.0) <= tolerance:
        return current
    return math.ceil(value / target)


@dataclass
class Poll:
    metric_names: list[str]
    targets: list[float]
    values: list[float]
    active: bool
    error: grpc.StatusCode | None = None
    message: str = ""


@dataclass
class KedaClient:
    channel: grpc.aio.Channel
    model: str | None
    name: str = "vllm-demo"
    namespace: str = "llm"
    extra_metadata: Mapping[str, str] = field(default_factory=dict)
    scaler_address: str = "prewarm.prewarm.svc:9090"

    def __post_init__(self) -> None:
        self.stub = pb_grpc.ExternalScalerStub(self.channel)

    @property
    def ref(self) -> pb.ScaledObjectRef:
        metadata = {"scalerAddress": self.scaler_address, **self.extra_metadata}
        if self.model is not None:
            metadata["model"] = self.model
        return pb.ScaledObjectRef(name=self.name, namespace=self.namespace, scalerMetadata=metadata)

    async def poll(self, timeout: float = 3.0) -> Poll:
        """One KEDA poll; a failed RPC ends it with the status (as KEDA records an error)."""
        try:
            spec = await self.stub.GetMetricSpec(self.ref, timeout=timeout)
            names = [s.metricName for s in spec.metricSpecs]
            targets = [keda_value(s.targetSizeFloat, s.targetSize) for s in spec.metricSpecs]
            values = []
            for metric_name in names:
                answer = await self.stub.GetMetrics(
                    pb.GetMetricsRequest(scaledObjectRef=self.ref, metricName=metric_name),
                    timeout=timeout)
                values.append(sum(keda_value(v.metricValueFloat, v.metricValue)
                                  for v in answer.metricValues))
            active = (await self.stub.IsActive(self.ref, timeout=timeout)).result
        except grpc.aio.AioRpcError as exc:
            return Poll([], [], [], False, error=exc.code(), message=exc.details() or "")
        return Poll(names, targets, values, active)


@dataclass
class ScaledObjectSim:
    """KEDA + HPA acting on one Deployment from the polls: min/max, activation, fallback."""

    min_replica_count: int = 0
    max_replica_count: int = 100
    tolerance: float = 0.1
    fallback_threshold: int | None = None
    fallback_replicas: int = 0
    replicas: int = 0
    failures: int = 0

    def apply(self, poll: Poll) -> int:
        if poll.error is not None:
            self.failures += 1
            if self.fallback_threshold is not None and self.failures > self.fallback_threshold \
                    and self.replicas > 0:
                self.replicas = self.fallback_replicas
            return self.replicas
        self.failures = 0
        if self.replicas == 0:
            if poll.active:  # scale from zero: the only way 0 -> 1 happens
                self.replicas = max(self.min_replica_count, 1)
            return self.replicas
        desired = max(hpa_desired(self.replicas, v, t, tolerance=self.tolerance)
                      for v, t in zip(poll.values, poll.targets, strict=True))
        self.replicas = min(max(desired, max(self.min_replica_count, 1)), self.max_replica_count)
        return self.replicas


async def stream_is_active_with_backoff(
    client: KedaClient,
    on_message: Callable[[bool], Awaitable[bool]],
    *,
    sleep: Callable[[float], Awaitable[None]],
    max_connects: int = 5,
) -> list[float]:
    """KEDA's StreamIsActive loop; returns the backoff delays slept between connects.

    ``on_message`` returns False to stop. Backoff 2 s doubling to 60 s; reset after an OK end.
    """
    delays: list[float] = []
    backoff = 2.0
    for _ in range(max_connects):
        call = client.stub.StreamIsActive(client.ref)
        try:
            async for message in call:
                if not await on_message(message.result):
                    call.cancel()
                    return delays
            backoff = 2.0  # ended with OK: reset
            delays.append(0.0)
            continue
        except grpc.aio.AioRpcError:
            pass
        delays.append(backoff)
        await sleep(backoff)
        backoff = min(backoff * 2, 60.0)
    return delays
