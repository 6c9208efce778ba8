"""KEDA's ExternalScaler over gRPC: translate the latest snapshot into KEDA's messages.

Handlers never query, fit or sleep: KEDA calls GetMetrics *and* IsActive on every poll, and its
HPA path gives all of them together a 3 s deadline. Each reads ``holder.current`` and answers.

Replica contract: GetMetricSpec target 1 (AverageValue), GetMetrics value = desired replicas, so
the HPA computes ceil(value / 1) = desired. Both the float and the deprecated int64 fields are set
(KEDA < 2.17 reads only the int; any KEDA uses the int when the float is <= 0).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
from prometheus_client import Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from scaler._pb import externalscaler_pb2 as pb
from scaler._pb import externalscaler_pb2_grpc as pb_grpc
from scaler.core.clock import Clock
from scaler.core.config import MODEL_NAME, OVERRIDE_KEYS, ModelSettings, Overrides, Settings, parse_overrides
from scaler.core.errors import MetadataError
from scaler.core.model import Decision
from scaler.snapshot import Snapshot, SnapshotHolder

log = logging.getLogger("prewarm.grpc")

METRIC_PREFIX = "prewarm-"
MODEL_KEY = "model"
_SHOWN_NAME_CHARS = 64
_SHOWN_MODELS = 10
_MAX_MESSAGE_CHARS = 1024
_MAX_PARSED = 10_000
"""Distinct trigger metadata remembered parsed (a client cycling values cannot grow it past this)."""
_METHODS = ("GetMetricSpec", "GetMetrics", "IsActive", "StreamIsActive", "StreamMetricSpec")

T = TypeVar("T")


def metric_name(model: str) -> str:
    """HPA metric name for a model: lowercase, DNS-safe (config names are DNS labels)."""
    return f"{METRIC_PREFIX}{model}"


def known(settings: Settings) -> str:
    """The configured models for an error message: at most ``_SHOWN_MODELS`` names."""
    names = settings.model_names
    if not names:
        return "(none)"
    more = len(names) - _SHOWN_MODELS
    return ", ".join(names[:_SHOWN_MODELS]) + (f" and {more} more" if more > 0 else "")


def shown(value: str) -> str:
    """A client-supplied string made safe to echo in an error message."""
    text = value if len(value) <= _SHOWN_NAME_CHARS else value[:_SHOWN_NAME_CHARS] + "..."
    return repr(text)


class GrpcMetrics(Collector):
    """The KEDA edge's own /metrics: RPCs by method and code, and how long they took."""

    def __init__(self) -> None:
        self.requests = Counter(
            "prewarm_grpc_requests", "ExternalScaler RPCs handled, by method and status code.",
            ["method", "code"], registry=None)
        self.seconds = Histogram(
            "prewarm_grpc_request_duration_seconds",
            "Time to answer an ExternalScaler RPC (streams: time to the first message).",
            ["method"], registry=None,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))

    def collect(self) -> Iterator[Metric]:
        yield from self.requests.collect()
        yield from self.seconds.collect()


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        if len(message) > _MAX_MESSAGE_CHARS:  # stays far below gRPC's 8-16 KiB metadata limits
            message = message[:_MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)
        self.code = code
        self.message = message


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    def __init__(self, holder: SnapshotHolder, clock: Clock, metrics: GrpcMetrics,
                 finish: Callable[[str, Overrides], Snapshot]) -> None:
        """``finish``: the engine registers a ScaledObject's overrides and publishes their
        finished answer (first poll with them only; then every refresh finishes them)."""
        self.holder = holder
        self.clock = clock
        self.metrics = metrics
        self.finish = finish
        # The hot path's fixed costs, paid once: the OK counter and latency child per method, and
        # each distinct trigger metadata parsed once per config (KEDA sends the same on every poll).
        self._ok = {m: metrics.requests.labels(m, "OK") for m in _METHODS}
        self._latency = {m: metrics.seconds.labels(m) for m in _METHODS}
        self._parsed: dict[tuple[str, tuple[str, ...]], Overrides] = {}
        self._parsed_for: Settings | None = None

    # --- resolution (pure reads of the snapshot) -----------------------------------------------

    def _model(self, ref: pb.ScaledObjectRef) -> ModelSettings:
        name = ref.scalerMetadata.get(MODEL_KEY, "")
        settings = self.holder.current.settings
        if not name:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"trigger metadata '{MODEL_KEY}' is required (known models: {known(settings)})")
        model = settings.model(name)
        if model is not None:
            return model
        if not re.fullmatch(MODEL_NAME, name):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"trigger metadata '{MODEL_KEY}' = {shown(name)} is not a valid model name "
                         f"(lowercase letters, digits, '-'); known models: {known(settings)}")
        raise _Abort(grpc.StatusCode.NOT_FOUND,
                     f"model {shown(name)} is not in the config; known models: {known(settings)}")

    def _decision(self, ref: pb.ScaledObjectRef) -> tuple[ModelSettings, Decision]:
        """The finished decision for this ScaledObject: a lookup; only the clock is checked here."""
        model = self._model(ref)
        overrides = self._overrides(ref, model)
        snap = self.holder.current
        decision = snap.answer(model.name, overrides)
        if decision is None and snap.decisions.get(model.name) is not None:
            decision = self.finish(model.name, overrides).answer(model.name, overrides)
        if decision is None or not decision.valid:
            why = decision.message if decision is not None else "no decision yet"
            raise _Abort(grpc.StatusCode.UNAVAILABLE, f"model {model.name!r}: {why}")
        if self.clock.now() > decision.expires_at:
            raise _Abort(grpc.StatusCode.UNAVAILABLE,
                         f"model {model.name!r}: decision is stale (made at {decision.at:.0f}, "
                         f"expired at {decision.expires_at:.0f}); the refresh loop is not keeping up")
        return model, decision

    def _overrides(self, ref: pb.ScaledObjectRef, model: ModelSettings) -> Overrides:
        settings = self.holder.current.settings
        if settings is not self._parsed_for or len(self._parsed) > _MAX_PARSED:
            self._parsed, self._parsed_for = {}, settings
        values = tuple(ref.scalerMetadata.get(key, "") for key in OVERRIDE_KEYS)
        cached = self._parsed.get((model.name, values))
        if cached is not None:
            return cached
        for key, value in zip(OVERRIDE_KEYS, values, strict=True):
            if len(value) > _SHOWN_NAME_CHARS:  # no bound is that long: refused before it is echoed
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                             f"model {model.name!r}: trigger metadata {key!r} = {shown(value)} is not a "
                             f"number ({len(value)} characters)")
        try:
            overrides = parse_overrides(ref.scalerMetadata, model)
        except MetadataError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"model {model.name!r}: {exc}") from None
        self._parsed[(model.name, values)] = overrides
        return overrides

    def _spec(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        model = self._model(ref)
        return pb.GetMetricSpecResponse(metricSpecs=[
            pb.MetricSpec(metricName=metric_name(model.name), targetSize=1, targetSizeFloat=1.0)])

    # --- unary RPCs ----------------------------------------------------------------------------

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: Any) -> pb.GetMetricSpecResponse:
        return await self._unary("GetMetricSpec", context, lambda: self._spec(request))

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Any) -> pb.GetMetricsResponse:
        def answer() -> pb.GetMetricsResponse:
            model, decision = self._decision(request.scaledObjectRef)
            expected = metric_name(model.name)
            if request.metricName and request.metricName != expected:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                             f"metricName {shown(request.metricName)} is not this model's metric "
                             f"({expected!r})")
            value = decision.replicas
            return pb.GetMetricsResponse(metricValues=[
                pb.MetricValue(metricName=expected, metricValue=value, metricValueFloat=float(value))])

        return await self._unary("GetMetrics", context, answer)

    async def IsActive(self, request: pb.ScaledObjectRef, context: Any) -> pb.IsActiveResponse:
        return await self._unary(
            "IsActive", context,
            lambda: pb.IsActiveResponse(result=self._decision(request)[1].active))

    # --- streams -------------------------------------------------------------------------------

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: Any
    ) -> AsyncIterator[pb.IsActiveResponse]:
        """Current state at once, then ``true`` on every refresh while active, ``false`` on change.

        A bad ref aborts (INVALID_ARGUMENT / NOT_FOUND). While data is unusable the stream stays
        open and silent, rather than erroring into KEDA's reconnect backoff (up to 60 s).
        Ends with OK when the server shuts down (KEDA resets its reconnect backoff on OK).
        """
        started = time.perf_counter()
        if await self._stream_first("StreamIsActive", context, lambda: self._model(request)) is None:
            return
        last: bool | None = None
        while not self.holder.closed:
            generation = self.holder.current.generation
            try:
                active = self._decision(request)[1].active
            except _Abort:
                active = None  # no usable data, or the model left the config: stay silent
            if active is not None and (active or active != last):
                if last is None:
                    self.metrics.seconds.labels("StreamIsActive").observe(
                        time.perf_counter() - started)
                yield pb.IsActiveResponse(result=active)
                last = active
            await self.holder.wait_newer(generation, timeout=60.0)

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: Any
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        """The spec at once (same as GetMetricSpec); it never changes for a model, so then wait."""
        spec = await self._stream_first("StreamMetricSpec", context, lambda: self._spec(request))
        if spec is None:
            return
        yield spec
        generation = self.holder.current.generation
        while not self.holder.closed:
            generation = (await self.holder.wait_newer(generation, timeout=60.0)).generation

    # --- plumbing ------------------------------------------------------------------------------

    async def _unary(self, method: str, context: Any, answer: Callable[[], T]) -> T:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return answer()
        except _Abort as exc:
            code = exc.code
            await context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method}: internal error (see logs)")
            raise
        finally:
            ok = code is grpc.StatusCode.OK
            (self._ok[method] if ok else self.metrics.requests.labels(method, code.name)).inc()
            self._latency[method].observe(time.perf_counter() - started)

    async def _stream_first(
        self, method: str, context: Any, answer: Callable[[], T]
    ) -> T | None:
        try:
            result = answer()
        except _Abort as exc:
            self.metrics.requests.labels(method, exc.code.name).inc()
            await context.abort(exc.code, exc.message)
            return None
        self.metrics.requests.labels(method, "OK").inc()
        return result


def add_to_server(servicer: ExternalScalerServicer, server: Any) -> None:
    pb_grpc.add_ExternalScalerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

