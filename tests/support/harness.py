"""In-process scaler for tests: real Engine, real gRPC server on a loopback port, fake clock and source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import yaml
from prometheus_client import CollectorRegistry

from forecasting.types import Series
from scaler.core.clock import FakeClock
from scaler.core.config import ModelSettings, Settings, parse_settings
from scaler.core.errors import SourceError
from scaler.core.model import Observation
from scaler.edges.keda.server import create_grpc_server
from scaler.edges.keda.servicer import ExternalScalerServicer, GrpcMetrics
from scaler.edges.metrics.collector import Counters, ForecastCollector
from scaler.engine import Engine
from scaler.snapshot import SnapshotHolder, initial_snapshot

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday midnight


def settings_from_yaml(text: str) -> Settings:
    return parse_settings(yaml.safe_load(text)).settings


@dataclass
class FakeSource:
    """Demand per model set by the test; ``fail`` makes the whole source fail like a dead Prometheus."""

    demand: dict[str, float | None] = field(default_factory=dict)
    history_values: dict[str, Series] = field(default_factory=dict)
    fail: str | None = None
    observe_calls: int = 0
    signals: dict[str, dict[str, float]] = field(default_factory=dict)
    """Other signals per model (e.g. ``slo_on_time_ratio``), as the Prometheus source yields them."""
    on_time_values: dict[str, list[tuple[float, float | None, float]]] = field(default_factory=dict)
    """(time, share, requests) per model: what ``on_time_history`` answers within [start, end)."""
    on_time_fail: str | None = None
    """Only ``on_time_history`` fails, with this reason."""

    def observe(self, models: Sequence[ModelSettings], *, now: float) -> Mapping[str, Observation]:
        self.observe_calls += 1
        if self.fail:
            raise SourceError(f"fake source down: {self.fail}", reason=self.fail)
        return {m.name: Observation(model=m.name, at=now, demand=self.demand.get(m.name),
                                    signals=self.signals.get(m.name, {}))
                for m in models}

    def history(self, model: ModelSettings, *, start: float, end: float, step_seconds: int) -> Series:
        if self.fail:
            raise SourceError("fake source down", reason=self.fail)
        if model.name in self.history_values:
            return self.history_values[model.name]
        n = int((end - start) // step_seconds)
        return Series(start=start, step_seconds=step_seconds, values=np.full(n, np.nan))

    def on_time_history(self, model: ModelSettings, *, start: float, end: float,
                        step_seconds: int) -> Sequence[tuple[float, float | None, float]]:
        if self.fail or self.on_time_fail:
            reason = self.fail or self.on_time_fail
            raise SourceError("fake source down", reason=reason or "")
        return [p for p in self.on_time_values.get(model.name, []) if start <= p[0] < end]


@dataclass
class Harness:
    clock: FakeClock
    source: FakeSource
    engine: Engine
    holder: SnapshotHolder
    server: grpc.aio.Server
    health: Any
    port: int
    channel: grpc.aio.Channel
    registry: CollectorRegistry

    async def step(self, seconds: float = 15.0) -> None:
        """Move the clock and run one refresh, as the scheduler would."""
        self.clock.step(seconds)
        await self.engine.refresh()

    async def close(self) -> None:
        await self.holder.close()
        await self.channel.close()
        await self.server.stop(0)


async def start_harness(settings: Settings, source: FakeSource, *, start: float = T0,
                        fit_executor: Any = None) -> Harness:
    clock = FakeClock(start)
    holder = SnapshotHolder(initial_snapshot(settings, clock.now()))
    engine = Engine(clock, settings, source, holder, fit_executor=fit_executor)
    registry = CollectorRegistry()
    metrics = GrpcMetrics()
    registry.register(metrics)
    servicer = ExternalScalerServicer(holder, clock, metrics, engine.finish)
    registry.register(ForecastCollector(lambda: holder.current, clock,
                                        counters=lambda: Counters(source_errors=engine.stats.source_errors)))
    server, health, port = await create_grpc_server(servicer, "127.0.0.1:0", None)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Harness(clock, source, engine, holder, server, health, port, channel, registry)
