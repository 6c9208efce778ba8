"""Numbers and durations as an operator reads them (``prewarm explain``, serve's log)."""

from __future__ import annotations

import math


def num(value: float | None, digits: int = 1) -> str:
    """``value`` to at most ``digits`` decimals, trailing zeros dropped; '-' for none/inf/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"


def duration(seconds: float) -> str:
    """E.g. 45 -> '45s', 360 -> '6m', 990 -> '16m30s' (negative: 0s)."""
    seconds = max(0.0, seconds)
    if seconds >= 120:
        return f"{seconds / 60:.0f}m" if seconds % 60 < 1 else f"{seconds // 60:.0f}m{seconds % 60:.0f}s"
    return f"{seconds:.0f}s"
