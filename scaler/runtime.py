"""The engine's mutable per-model state, and the small pieces of it the SLO tuner replays.

Owned by the engine task alone (``scaler.engine``); nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from forecasting.fitted import FittedForecaster
from scaler.core.decision import DecisionState
from scaler.core.model import Decision
from scaler.core.slo import TunerState
from scaler.history import History
from scaler.snapshot import FitInfo


@dataclass
class Track:
    """One on-time target a ScaledObject asked for (``sloOnTime``) other than the model's own:
    its own tuned margin, decision state (scale-down window) and the bases it decided on."""

    tuner: TunerState = field(default_factory=TunerState)
    state: DecisionState = field(default_factory=DecisionState)
    bases: History | None = None


@dataclass
class ModelRuntime:
    """Mutable per-model state, owned by the engine task alone."""

    history: History
    state: DecisionState = field(default_factory=DecisionState)
    fitted: FittedForecaster | None = None
    fit: FitInfo | None = None
    pending_for_now: deque[tuple[float, float]] = field(default_factory=deque)
    forecast_for_now: float | None = None
    backfilled: bool = False
    tuner: TunerState = field(default_factory=TunerState)
    """The SLO margin tuner (models with ``slo``); re-chosen in the fit pool (``retune``)."""
    bases: History | None = None
    """Per step, the base each decision applied its margin to: what the tuner replays."""
    on_time: float | None = None
    """The last measured on-time share (``slo_on_time_ratio`` from the source)."""
    on_time_requests: float | None = None
    """Requests behind ``on_time`` (``slo_requests``; None: not read with it)."""
    on_time_at: float = -math.inf
    """When ``on_time`` was last read: a tuner takes it only if read since its last retune."""
    targets: dict[float, Track] = field(default_factory=dict)
    """Other on-time targets ScaledObjects asked for (``sloOnTime``), each tuned on its own."""


@dataclass
class EngineStats:
    source_errors: dict[str, int] = field(default_factory=dict)
    refreshes: int = 0
    refits: int = 0
    fit_errors: int = 0
    last_refresh_seconds: float = 0.0
    last_refit_seconds: float = 0.0
    last_source_success: float | None = None


def record_base(bases: History | None, decision: Decision, *, now: float, step: int, span: float) -> History | None:
    """Remember the base a decision applied its margin to (what the tuner replays next)."""
    if not decision.valid or decision.base is None:
        return bases
    if bases is None or bases.step != step:
        bases = History(step_seconds=step, span_seconds=span)
    bases.add(now, decision.base)
    return bases


def on_grid(demand_start: float, step: float, n: int, bases: History | None, now: float) -> np.ndarray:
    """``bases`` on the demand's step grid (NaN where no decision was recorded)."""
    out = np.full(n, np.nan)
    done = bases.completed(now) if bases is not None else None
    if done is not None:
        offset = round((done.start - demand_start) / step)
        lo, hi = max(0, offset), min(n, offset + len(done))
        if hi > lo:
            out[lo:hi] = done.values[lo - offset:hi - offset]
    return out
