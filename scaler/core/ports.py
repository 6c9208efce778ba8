"""The small interfaces the engine talks through; adapters implement them, tests fake them.

Each is the minimal surface the engine needs, so a fake for a test is a few lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from forecasting.types import Series
from scaler.core.config import ModelSettings, Settings
from scaler.core.model import ColdStart, Decision, Observation


class MetricSource(Protocol):
    """Current and historical demand per model (Prometheus, or a replayed trace).

    Blocking calls: the engine runs them in a thread. Both raise ``SourceError`` when the
    source as a whole fails; a model with no data gets ``Observation(demand=None)`` / NaN.
    """

    def observe(self, models: Sequence[ModelSettings], *, now: float) -> Mapping[str, Observation]:
        """One batched read of every signal for all ``models``; keyed by model name."""
        ...

    def history(
        self, model: ModelSettings, *, start: float, end: float, step_seconds: int
    ) -> Series:
        """Demand over [start, end) at ``step_seconds``; NaN where unknown."""
        ...


class ColdStartProvider(Protocol):
    """Latest cold-start estimate per model (cheap: served from a watcher's cache)."""

    def cold_start(self, model: ModelSettings, *, now: float) -> ColdStart | None:
        """None: nothing learned (the config's initial value applies)."""
        ...


class Actuator(Protocol):
    """Acts on each new set of decisions (e.g. sizes balloon Deployments). Leader-gated inside."""

    async def actuate(self, settings: Settings, decisions: Mapping[str, Decision], *, now: float) -> None:
        ...
