"""The small interface the engine reads demand through; edges implement it, tests fake it.

Each is the minimal surface the engine needs, so a fake for a test is a few lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from forecasting.types import Series
from scaler.core.config import ModelSettings
from scaler.core.model import Observation


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

    def on_time_history(
        self, model: ModelSettings, *, start: float, end: float, step_seconds: int
    ) -> Sequence[tuple[float, float | None, float]]:
        """The SLO's measured on-time share over [start, end) at ``step_seconds``, each over the
        model's ``slo.window``: (time, share, requests) where known, in time order, with share None
        and 0 requests where nothing finished (idle); empty for a model without ``slo`` or a
        source that keeps no such history (a replayed trace)."""
        ...
