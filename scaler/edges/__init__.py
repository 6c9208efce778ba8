"""The daemon's I/O edges, one package (or module) each, all behind one small interface.

    keda/         ExternalScaler gRPC servicer + server (health, reflection, TLS)
    prometheus/   the metric source: PromQL templates, batched queries, its /metrics
    kubernetes/   learned cold starts, GPU accounting feed, balloons, Lease, state, ConfigMap
    configfile    the config file, polled (when it is the live config source)
    replay        a recorded trace as the metric source (demos, CI)
    metrics/      the /metrics HTTP endpoint and the decisions' and forecasts' collector

Edges never import each other (an import-linter ``independence`` contract): what one needs from
another reaches it through the app as a plain value or a callable (the config parser, the
snapshot holder). The app drives every edge through :class:`Edge`:

- ``problems(settings)``: checks only this edge can make, added to the core's config validation;
- ``start()``: bind sockets, connect; ``tasks()``: long-running coroutines the app runs;
- ``apply(settings)``: a new valid config (the app is the only owner of settings);
- ``collector()``: this edge's own /metrics, or None; ``aclose()``: release everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.registry import Collector

from forecasting.types import Series
from scaler.core.config import ModelSettings, Settings
from scaler.core.model import Observation
from scaler.core.ports import MetricSource

Task = Callable[[], Coroutine[Any, Any, None]]
"""A long-running coroutine function; its ``__name__`` is the task's name in logs and metrics."""


def named(name: str, run: Callable[[], Awaitable[None]]) -> Task:
    """``run`` as a zero-argument coroutine function whose ``__name__`` is ``name``."""

    async def task() -> None:
        await run()

    task.__name__ = task.__qualname__ = name
    return task


class Edge:
    """Base of every edge: each method's default does nothing, so an edge overrides what it has."""

    name = "edge"

    @staticmethod
    def problems(settings: Settings) -> list[str]:
        """Config problems only this edge can see (``key.path: problem``); static, so the app can
        validate a config before any edge exists (``check-config``, the first load)."""
        return []

    async def start(self) -> None:
        """Bind, connect: after this the edge's ``tasks()`` may run."""

    def tasks(self) -> list[Task]:
        return []

    def apply(self, settings: Settings) -> None:
        """A new valid config, already accepted by every edge's ``problems``."""

    def collector(self) -> Collector | None:
        return None

    async def aclose(self) -> None:
        """Stop and release; called once, after the app cancelled ``tasks()``."""


class SourceEdge(Edge):
    """An edge that is the engine's :class:`~scaler.core.ports.MetricSource` by handing every read
    to ``self.source`` (a Prometheus client, a replayed trace), which it may swap on a new config."""

    source: MetricSource

    def observe(self, models: Sequence[ModelSettings], *, now: float) -> Mapping[str, Observation]:
        return self.source.observe(models, now=now)

    def history(self, model: ModelSettings, *, start: float, end: float, step_seconds: int) -> Series:
        return self.source.history(model, start=start, end=end, step_seconds=step_seconds)

    def on_time_history(self, model: ModelSettings, *, start: float, end: float,
                        step_seconds: int) -> Sequence[tuple[float, float | None, float]]:
        return self.source.on_time_history(model, start=start, end=end, step_seconds=step_seconds)


@dataclass
class ReloadStats:
    """What a config source counts: applied and rejected versions, the last rejection."""

    reloads_total: int = 0
    errors_total: int = 0
    last_error: str | None = None

    def applied(self) -> None:
        self.reloads_total += 1
        self.last_error = None

    def rejected(self, error: Exception) -> None:
        self.errors_total += 1
        self.last_error = str(error)
