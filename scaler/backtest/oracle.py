"""The oracle of docs/BACKTEST.md: the cheapest schedule with zero late requests, by foresight.

Zero late requests needs ``R(t) >= need(t) = max(min_replicas, ceil(demand(t)))`` every minute
(with no backlog ever, ``late(t) = max(0, a(t) - c R(t))``). Replicas are interchangeable, so each
level k = 1, 2, ... is scheduled on its own: it must serve in the minutes where ``need >= k``; it
is ordered one cold start ``C`` before each run of such minutes and kept through a gap of length
``g`` when ``g <= C``. Either way a gap costs ``min(g, C)`` billed minutes (keeping it costs g, a
restart costs the C minutes of cold start that fall inside the gap). So level k is billed at
minute t exactly when some minute of ``[t, t + C]`` needs it, and the billed count is::

    billed(t) = max(need(t), need(t + 1), ..., need(t + C))

E.g. C = 2, need = 1 1 3 1 1 1 -> billed = 3 3 3 1 1 1: level 2 and 3 are ordered at minute 0
to serve at minute 2. Nothing real beats it; with a cold-start range it uses the shortest.
"""

from __future__ import annotations

import math

import numpy as np

from forecasting.types import FloatArray
from scaler.backtest.sim import IntArray

_EPSILON = 1e-6


def oracle_need(demand: FloatArray, *, min_replicas: int) -> IntArray:
    """Ready replicas each minute needs so nothing is late: max(min, ceil(demand))."""
    need = np.ceil(np.maximum(demand, 0.0) - _EPSILON).astype(np.int64)
    return np.maximum(need, min_replicas)


def oracle_billed(demand: FloatArray, *, cold_start_minutes: int, min_replicas: int) -> IntArray:
    """Billed replicas per minute of the optimal schedule: the max of need over [t, t + C]."""
    need = oracle_need(demand, min_replicas=min_replicas)
    if cold_start_minutes <= 0 or need.shape[0] == 0:
        return need
    padded = np.concatenate([need, np.zeros(cold_start_minutes, dtype=np.int64)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, cold_start_minutes + 1)
    return np.asarray(windows.max(axis=1), dtype=np.int64)


def oracle_cold_minutes(cold_start_s: tuple[float, float], node_provision_s: float) -> int:
    """The oracle's lead in minutes: the shortest cold start + node provisioning (a lower bound)."""
    return max(0, math.ceil((cold_start_s[0] + node_provision_s) / 60.0 - 1e-9))
