"""Demand to whole replicas: the one rounding the decision and the SLO tuner's replay share.

The replay (``scaler.core.slo``) models the decision step by step; if the two rounded a demand
differently, a margin would be judged on counts serve never asks for.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

EPSILON = 1e-6
"""Demand is a float from PromQL: 32.00001 / 16 must not round up to 3 replicas."""


def replicas_for(demand: float, capacity: float) -> int:
    """Replicas that serve ``demand`` at ``capacity`` each: ceil, tolerant to float noise."""
    if demand <= 0:
        return 0
    return max(0, math.ceil(demand / capacity - EPSILON))


def whole(level: float, capacity: float) -> float:
    """``level`` rounded up to whole replicas, in demand units (e.g. 33 at 16 per replica: 48)."""
    return replicas_for(level, capacity) * capacity


def replicas_of(demand: FloatArray, capacity: float) -> FloatArray:
    """:func:`replicas_for` of every element (demand >= 0), as floats."""
    out: FloatArray = np.ceil(demand / capacity - EPSILON)
    return out
