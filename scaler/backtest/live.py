"""The live side of ``prewarm demo``: the simulated Deployment, its record and the terminal view.

Pure (no gRPC): the Deployment follows the backtest's own HPA rules and fluid cluster
(:mod:`scaler.backtest.sim`), so a live run and a backtest of the same trace can be compared.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from scaler.backtest.sim import Cluster, Hpa, Metric, on_time_share

SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class Record:
    """The live run's per-minute series (for the view and the PNG); replica units."""

    minutes: list[int] = field(default_factory=list)
    demand: list[float] = field(default_factory=list)
    forecast_peak: list[float] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    ordered: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    billed: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def late_share(self) -> float:
        total = sum(self.arrivals)
        return sum(self.late) / total if total > 0 else 0.0

    def gpu_hours(self) -> float:
        return sum(self.billed) / 60.0

    def on_time(self, *, window: int, delay: int) -> tuple[float | None, float]:
        """(on-time share, requests) of the ``window`` minutes that ended ``delay`` minutes ago
        (share None: no request finished there): what vLLM's queue-time histogram would show."""
        return on_time_share(self.arrivals, self.late, stop=len(self.arrivals) - delay, window=window)


@dataclass
class Fluid:
    """The simulated Deployment: HPA rules, replicas with cold starts, the FIFO backlog."""

    hpa: Hpa
    pool: Cluster
    capacity: float
    backlog: float = 0.0

    def scale(self, metric: Metric | None, minute: int, now: float) -> None:
        if metric is not None:
            self.pool.scale_to(self.hpa.apply(metric, self.pool.count, now), minute)

    def serve(self, arrivals: float, minute: int) -> tuple[int, int, float]:
        """(ready, billed, late) for one minute (docs/BACKTEST.md's queue formulas)."""
        ready, billed = self.pool.tick(minute)
        served = self.capacity * ready
        late = max(0.0, arrivals - max(0.0, served - self.backlog))
        self.backlog = max(0.0, self.backlog + arrivals - served)
        return ready, billed, late


def sparkline(values: Sequence[float], top: float, width: int = 60) -> str:
    """Values squeezed into ``width`` characters (max per cell), scaled to ``top``."""
    if not values or top <= 0:
        return ""
    chunks = np.array_split(np.asarray(values[-width * 3 :], dtype=np.float64), width)
    cells = [float(c.max()) if c.size else 0.0 for c in chunks]
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int(v / top * (len(SPARK) - 1))))] for v in cells)


class LiveView:
    """An in-place terminal table (a TTY), or one plain line per virtual hour."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out = out
        self.live = live
        self.lines = 0
        self.last_render = 0.0

    def update(self, text: list[str], *, minute: int, force: bool = False) -> None:
        if self.live:
            now = time.monotonic()
            if force or now - self.last_render >= 0.2:
                self.last_render = now
                up = f"\x1b[{self.lines}F" if self.lines else ""
                self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in text))
                self.out.flush()
                self.lines = len(text)
        elif minute % 60 == 0 or force:
            print(text[-1], file=self.out, flush=True)


def _slo_text(info: dict[str, Any], *, brief: bool) -> str:
    """Target, measured on-time share (last hour) and the margin the tuner chose: a table row,
    or (``brief``) a suffix of the one-line summary."""
    target, measured, margin = info.get("slo"), info.get("on_time"), info.get("margin")
    if target is None:
        return "" if brief else "SLO               none set (manual quantile)"
    share = "-" if measured is None else f"{100 * measured:.2f}%"
    multiplier = "" if margin is None else f"margin x{margin:.2f}"
    if brief:
        return f"; SLO {100 * target:g}% on time, measured {share}" + (f", {multiplier}" if multiplier else "")
    return f"SLO target        {100 * target:g} % on time; measured {share} (last hour)   {multiplier}"


def _forecast_text(rec: Record, info: dict[str, Any], *, brief: bool) -> str:
    """The forecast peak, or why there is none (demoted, not fitted yet): never a bare nan."""
    why = info.get("no_forecast")
    f = rec.forecast_peak[-1]
    if why is None and f == f:  # a number (nan != nan)
        if brief:
            return f"forecast-peak {f:.1f}"
        return (f"forecast p{info['quantile']:g} peak {f:7.1f} replicas   over the lead of "
                f"{info['lead'] / 60:.1f} min   forecaster: {info['forecaster']}")
    why = why or "no forecast"
    if brief:
        return f"no forecast ({why}; scaled reactively)"
    return f"forecast          none: {why}; scaled reactively   forecaster: {info['forecaster']}"


def view_lines(rec: Record, info: dict[str, Any]) -> list[str]:
    """The table: header, demand, forecast, answer, deployment, late, sparklines, a summary line."""
    d = rec.demand[-1]
    top = max(max(rec.demand[-180:]), max(rec.ready[-180:]), 1.0)
    stamp = time.strftime("%a %Y-%m-%d %H:%M", time.gmtime(info["now"]))
    done = info["done"]
    bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
    return [
        f"prewarm demo: gRPC ExternalScaler on {info['address']}, KEDA-like client every "
        f"{info['polling']:g}s, cold start {info['cold']}",
        f"virtual {stamp} UTC  [{bar}] {100 * done:3.0f}%",
        f"demand now        {d:7.1f} replicas   ({rec.arrivals[-1]:.0f} requests/min)",
        _forecast_text(rec, info, brief=False),
        _slo_text(info, brief=False),
        f"prewarm answers   {rec.answered[-1]:7d} replicas   reason: {info['reason']}",
        f"deployment        {rec.ordered[-1]:7d} ordered, {rec.ready[-1]} ready",
        f"late requests     {100 * rec.late_share():7.3f} %          GPU-hours {rec.gpu_hours():.1f}",
        f"demand {sparkline(rec.demand, top)}",
        f"ready  {sparkline(rec.ready, top)}",
        f"[{stamp}] demand {d:.1f} {_forecast_text(rec, info, brief=True)} -> {rec.answered[-1]} replicas "
        f"({info['reason']}); ready {rec.ready[-1]}; late {100 * rec.late_share():.3f}%; "
        f"GPU-h {rec.gpu_hours():.1f}{_slo_text(info, brief=True)}",
    ]
