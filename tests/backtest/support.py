"""Small scenarios for backtest tests: hand-made arrivals or a short synthetic trace; the
benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from forecasting.traces import synthetic_trace
from scaler.backtest.scenario import Scenario, scenario_from_series

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def scenario(arrivals: Sequence[float], *, capacity: float = 100.0, warmup: int = 0,
             observed: Sequence[bool] | None = None) -> Scenario:
    """Arrivals per minute as given; every minute scored unless ``warmup``."""
    a = np.asarray(arrivals, dtype=np.float64)
    seen = np.ones(a.shape[0], dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    return Scenario("table", T0, a, seen, capacity, warmup)


def synthetic(days: int = 3, *, warmup_days: float = 2.0, peak: float = 200.0,
              capacity: float | None = None) -> Scenario:
    """The built-in synthetic trace at 1-minute steps (daily cycle, Poisson noise)."""
    series = synthetic_trace(days=days, step_seconds=60, seed=1, peak_per_minute=peak).series
    return scenario_from_series(series, name="synthetic", warmup_seconds=warmup_days * 86400,
                                peak_replicas=10, capacity=capacity)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the folder is scripts, not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module
