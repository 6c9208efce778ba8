"""Shared fixtures: small coarse series so the whole forecasting suite stays fast."""

from __future__ import annotations

import os

# statsmodels fits are tiny: OpenBLAS's thread pool only makes them spin against each other on a
# busy 2-core machine (2x slower measured). Effective only if numpy is not imported yet.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from forecasting import Series  # noqa: E402
from forecasting.traces import synthetic_trace  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def hourly() -> Series:
    """16 days of hourly synthetic traffic: daily + weekly season, Poisson noise."""
    return synthetic_trace(days=16, step_seconds=3600, seed=1).series


@pytest.fixture(scope="session")
def servegen() -> Path:
    path = SHARED_DATA / "servegen"
    if not path.is_dir():
        pytest.skip(f"real traces not found at {path} (../shared/data next to the repo)")
    return path


def noisy_daily(days: int, step: int, *, seed: int = 0, level: float = 100.0) -> Series:
    t = np.arange(days * 86400 // step)
    values = level * (1 + 0.5 * np.sin(2 * np.pi * t * step / 86400))
    values += np.random.default_rng(seed).normal(0, level * 0.05, t.shape[0])
    return Series(0.0, step, np.maximum(values, 0))
