"""A metrics source that replays a trace against the clock (demo, dry runs, tests).

The trace loops: time t reads bucket ``((t - trace.start) // step) mod n``, so a 14-day trace
keeps its daily and weekly alignment forever, and history before "now" exists for fitting.
Demand is arrivals per minute x ``scale`` (the demo's capacityPerReplica is in the same unit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from forecasting.types import Series
from scaler.core.config import ModelSettings, ReplaySettings, Settings
from scaler.core.errors import ConfigError
from scaler.core.model import Observation
from scaler.edges import SourceEdge

log = logging.getLogger("prewarm.replay")


def load_trace_series(trace: str, *, base_dir: Path | None = None) -> Series:
    """Requests per bucket from ``synthetic`` or a trace CSV; ConfigError naming a bad file."""
    from forecasting import traces

    if trace == "synthetic":
        return traces.synthetic_trace(days=14, step_seconds=60, seed=0).series
    path = Path(trace)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        return traces.read_trace(path).series
    except (OSError, ValueError) as exc:
        raise ConfigError([f"replay.trace: {exc}"]) from None


class ReplaySource:
    def __init__(self, settings: ReplaySettings, *, base_dir: Path | None = None) -> None:
        series = load_trace_series(settings.trace, base_dir=base_dir)
        per_minute = np.nan_to_num(series.values, nan=0.0) * (60.0 / series.step_seconds)
        self._values = np.maximum(per_minute * settings.scale, 0.0)
        self._start = series.start
        self._step = series.step_seconds
        self.trace = settings.trace

    @property
    def peak(self) -> float:
        return float(self._values.max()) if len(self._values) else 0.0

    def demand_at(self, t: float | np.ndarray) -> np.ndarray:
        index = np.floor((np.asarray(t, dtype=np.float64) - self._start) / self._step)
        return self._values[(index % len(self._values)).astype(np.int64)]

    def observe(self, models: Sequence[ModelSettings], *, now: float) -> Mapping[str, Observation]:
        demand = float(self.demand_at(now))
        return {m.name: Observation(model=m.name, at=now, demand=demand) for m in models}

    def history(
        self, model: ModelSettings, *, start: float, end: float, step_seconds: int
    ) -> Series:
        first = np.floor(start / step_seconds) * step_seconds
        times = np.arange(first, end - step_seconds + 1e-9, step_seconds, dtype=np.float64)
        # Mean over each step of the trace's (possibly finer) buckets.
        sub = max(1, step_seconds // min(self._step, step_seconds))
        offsets = (np.arange(sub) + 0.5) * (step_seconds / sub)
        values = self.demand_at(times[:, None] + offsets[None, :]).mean(axis=1)
        return Series(start=float(first), step_seconds=step_seconds, values=values)

    def on_time_history(self, model: ModelSettings, *, start: float, end: float,
                        step_seconds: int) -> Sequence[tuple[float, float | None, float]]:
        """A trace has demand only: no measured share to recall."""
        return ()


class ReplayEdge(SourceEdge):
    """The replay source as an edge: the trace is read once; a changed ``replay:`` waits for a
    restart (replay runs demos and CI, where a restart is cheap and a half-swapped clock is not)."""

    name = "replay"

    def __init__(self, settings: Settings, *, base_dir: Path | None = None) -> None:
        assert settings.replay is not None
        self._settings = settings.replay
        self.source = ReplaySource(settings.replay, base_dir=base_dir)
        self.errors_total: Mapping[str, int] = {}

    def apply(self, settings: Settings) -> None:
        if settings.replay != self._settings:
            log.warning("config: changes to the `replay:` section apply after a restart")
