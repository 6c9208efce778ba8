"""The immutable view gRPC handlers and the metrics collector read.

The engine builds a new ``Snapshot`` on every refresh and swaps the reference; readers never
see a half-updated state and never wait for I/O. Streams wait on ``SnapshotHolder.changed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from forecasting.types import Forecast
from scaler.core.config import Overrides, Settings
from scaler.core.model import ColdStart, Decision, Observation, Reason
from scaler.core.slo import Margin


@dataclass(frozen=True)
class FitInfo:
    model_name: str
    """Forecasting model chosen (e.g. ``mstl_ets``)."""
    skill: float | None
    """MASE vs seasonal naive on recent data (< 1: better than naive)."""
    reason: str
    fitted_at: float
    fit_seconds: float
    demoted: bool
    """True: skill >= maxSkill, the model is scaled reactively."""


@dataclass(frozen=True)
class Snapshot:
    at: float
    generation: int
    settings: Settings
    decisions: Mapping[str, Decision]
    observations: Mapping[str, Observation] = field(default_factory=dict)
    forecasts: Mapping[str, Forecast] = field(default_factory=dict)
    fits: Mapping[str, FitInfo] = field(default_factory=dict)
    cold_starts: Mapping[str, ColdStart] = field(default_factory=dict)
    forecast_for_now: Mapping[str, float] = field(default_factory=dict)
    """Per model: the upper-quantile forecast made one lead time ago for now (lines up with actual)."""
    ready_replicas: Mapping[str, int] = field(default_factory=dict)
    """Per model: Ready pods of its target Deployment (Kubernetes integration only)."""
    margins: Mapping[str, Margin] = field(default_factory=dict)
    """Per model with an SLO: the margin its tuner uses (the shape behind ``Decision.margin``)."""
    budgets: Mapping[str, str] = field(default_factory=dict)
    """Per model with an SLO: its tuner's reading of the week's error budget (``TunerState.budget``)."""
    answers: Mapping[tuple[str, Overrides], Decision] = field(default_factory=dict)
    """Finished decisions for the trigger-metadata overrides ScaledObjects asked with; a model
    asked without overrides is answered from ``decisions``."""

    def answer(self, model: str, overrides: Overrides) -> Decision | None:
        """The finished decision for one ScaledObject (None: not finished for these overrides)."""
        if overrides == NO_OVERRIDES:
            return self.decisions.get(model)
        return self.answers.get((model, overrides))

    def final_decisions(self) -> dict[str, Decision]:
        """Per model, the answer KEDA gets: with several ScaledObjects, the largest (balloons
        pre-warm for the most any of them asks)."""
        out = dict(self.decisions)
        for (model, _), decision in self.answers.items():
            if model in out and decision.replicas > out[model].replicas:
                out[model] = decision
        return out


NO_OVERRIDES = Overrides()


class SnapshotHolder:
    """Holds the latest snapshot; notifies waiters (StreamIsActive) on every publish."""

    def __init__(self, initial: Snapshot) -> None:
        self._current = initial
        self._changed = asyncio.Condition()
        self.closed = False

    @property
    def current(self) -> Snapshot:
        return self._current

    def replace_nowait(self, snapshot: Snapshot) -> None:
        """Swap without waking streams (config reload; the next refresh publishes properly)."""
        self._current = snapshot

    async def publish(self, snapshot: Snapshot) -> None:
        async with self._changed:
            self._current = snapshot
            self._changed.notify_all()

    async def wait_newer(self, generation: int, timeout: float | None = None) -> Snapshot:
        """Wait until a snapshot newer than ``generation`` (or close); returns the current one."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: self.closed or self._current.generation > generation
                    ),
                    timeout,
                )
            return self._current

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()


def initial_snapshot(settings: Settings, now: float) -> Snapshot:
    """Before the first refresh: every model invalid (GetMetrics answers UNAVAILABLE, not 0)."""
    decisions = {
        m.name: Decision(model=m.name, at=now, replicas=0, reason=Reason.NO_DATA, valid=False,
                         active=False, expires_at=now, message="no data yet: starting up")
        for m in settings.models
    }
    return Snapshot(at=now, generation=0, settings=settings, decisions=decisions)


def replace_settings(snapshot: Snapshot, settings: Settings) -> Snapshot:
    """Same decisions under new settings (new models start invalid until the next refresh)."""
    fresh = initial_snapshot(settings, snapshot.at).decisions
    decisions = {name: snapshot.decisions.get(name, fresh[name]) for name in fresh}
    return replace(snapshot, settings=settings, decisions=decisions,
                   generation=snapshot.generation + 1)
