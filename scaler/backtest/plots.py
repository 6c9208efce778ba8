"""The backtest's picture: forecast vs actual, ready replicas per policy, the self-tuner hour by
hour (with ``--slo``), and the Pareto curves.

Each panel says what it shows: the span a zoomed panel really covers, the policies it leaves out
and why, and where a run without a single late request is drawn on the log axis.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from forecasting.cleaning import runs
from scaler.backtest.pareto import Point, pareto_frontier, reaching
from scaler.backtest.scenario import MINUTE
from scaler.backtest.sim import RunResult
from scaler.backtest.sweep import Backtest, Sweep

COLORS = {"predictive": "tab:blue", "reactive-util": "tab:orange", "reactive-queue": "tab:red",
          "static": "tab:gray", "oracle": "black"}


def shown_run(sweep: Sweep, slo: float = 0.99) -> tuple[Point, RunResult]:
    """The run plotted for a policy: where cost_at_slo lands, else its best attainment."""
    chosen = reaching(sweep.points, slo) or max(sweep.points, key=lambda p: p.slo_attainment)
    i = next(i for i, p in enumerate(sweep.points) if p is chosen)
    return chosen, sweep.runs[i]


def lead_minutes(bt: Backtest) -> int:
    """How far ahead a replica must be ordered: the cold start p90 in whole minutes (>= 1)."""
    return max(1, math.ceil(bt.spec.cluster.cold_start_p90_s / 60 - 1e-9))


def forecast_for_now(bt: Backtest, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """(minutes, demand in replicas) the tape forecast one lead earlier for each minute."""
    sc = bt.scenario
    minutes, values = [], []
    if bt.tape is None:
        return np.array([]), np.array([])
    ahead = lead_minutes(bt)
    for t in range(sc.warmup_minutes, sc.minutes):
        forecast, _ = bt.tape.at(t - ahead)
        if forecast is not None and ahead < forecast.h:
            minutes.append(t)
            values.append(float(forecast.quantile(quantile)[ahead]) / sc.capacity)
    return np.array(minutes), np.array(values)


def plot(bt: Backtest, path: Path) -> None:
    """Forecast vs actual, replicas over time per policy, and the Pareto curves."""
    from forecasting.extras import pyplot

    plt = pyplot("backtest")

    path.parent.mkdir(parents=True, exist_ok=True)
    panels = 3 if bt.auto is None else 4
    fig, axes = plt.subplots(panels, 1, figsize=(13, 11 * panels / 3))
    plot_forecast(bt, axes[0])
    plot_replicas(bt, axes[1])
    if bt.auto is not None:
        plot_tuner(bt, axes[2])
    plot_pareto(bt, axes[-1])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _hours(bt: Backtest, minutes: np.ndarray) -> np.ndarray:
    return np.asarray(minutes, dtype=np.float64) / 60.0


def plot_forecast(bt: Backtest, ax: Any) -> None:
    sc = bt.scenario
    window = np.arange(sc.warmup_minutes, sc.minutes)
    ax.plot(_hours(bt, window), sc.demand[window], color="black", lw=0.6, label="actual demand")
    for q, style in ((0.5, "-"), (0.9, "--")):
        minutes, values = forecast_for_now(bt, q)
        if minutes.size:
            ax.plot(_hours(bt, minutes), values, color="tab:blue", lw=0.7, ls=style,
                    label=f"forecast q{q:g} made {lead_minutes(bt)} min earlier")
    ax.set_ylabel("replicas of demand")
    ax.set_xlabel("hours since trace start")
    ax.set_title(f"{Path(sc.name).name}: demand vs forecast one lead time ahead")
    ax.legend(loc="upper left", fontsize=8)


def zoom(bt: Backtest, minutes: int = 2 * 1440) -> np.ndarray:
    """Up to two days of the evaluation window centred on its busiest minute (readable steps)."""
    sc = bt.scenario
    lo = sc.warmup_minutes
    peak = lo + int(np.argmax(sc.demand[lo:]))
    start = max(lo, min(peak - minutes // 2, sc.minutes - minutes))
    return np.arange(start, min(sc.minutes, start + minutes))


def span_text(minutes: int) -> str:
    """``two days``, ``one day``, ``18 h``: what a zoomed panel really shows."""
    if minutes >= 2 * 1440:
        return "two days"
    return "one day" if minutes >= 1440 else f"{minutes / 60:.3g} h"


def plot_replicas(bt: Backtest, ax: Any) -> None:
    """Ready replicas of each policy that reaches 99 % on time, at the knob where it does.

    A policy that never reaches it is left out and named instead: its best run (reactive-queue
    swinging between 1 and 40 replicas on m-mid) would cover the lines worth comparing.
    """
    sc = bt.scenario
    window = zoom(bt)
    hours = _hours(bt, window)
    ax.plot(hours, sc.demand[window], color="black", lw=0.5, alpha=0.6, label="demand")
    ax.plot(hours, bt.oracle[window], color=COLORS["oracle"], lw=0.8, ls=":", label="oracle (billed)")
    left_out = []
    for name, sweep in bt.sweeps.items():
        point, run = shown_run(sweep)
        if point.slo_attainment < 0.99:
            left_out.append(f"{name} (best {100 * point.slo_attainment:.1f} % on time)")
            continue
        ax.step(hours, run.ready[window], where="post", color=COLORS.get(name), lw=0.8,
                label=f"{name} {point.label} (ready)")
    if bt.auto is not None:
        ax.step(hours, bt.auto.run.ready[window], where="post", color=AUTO_COLOR, lw=1.4,
                label=f"self-tuned --slo {bt.auto.slo:g} (ready)")
    if left_out:  # a legend line of its own, so it never sits on top of a curve
        ax.plot([], [], " ", label="not drawn, never 99 % on time: " + ", ".join(left_out))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom above the curves for the legend
    ax.set_ylabel("replicas")
    ax.set_xlabel("hours since trace start")
    ax.set_title("ready replicas per policy at the cheapest knob reaching 99 % on time, "
                 f"{span_text(len(window))} around the peak")
    ax.legend(loc="upper left", fontsize=8, ncol=2)


AUTO_COLOR = "tab:purple"
TUNER_FLOOR = 1e-5
"""Where the tuner panel draws an hour without a late request (log(0) has no place)."""


def plot_tuner(bt: Backtest, ax: Any) -> None:
    """The self-tuned run hour by hour: the late share its tuner was fed against the target's and
    the aim's, the stretches where the week's error budget was spent, and the margin it held
    (provisioned / expected demand, hourly mean) on a second axis."""
    auto, sc = bt.auto, bt.scenario
    assert auto is not None
    start = sc.start + sc.warmup_minutes * MINUTE
    steps = [s for s in auto.controller.steps if s.at >= start]
    if not steps:
        return
    hours = np.array([(s.at - sc.start) / 3600.0 for s in steps])
    late = np.array([np.nan if s.on_time is None else max(TUNER_FLOOR, 1.0 - s.on_time) for s in steps])
    none = late <= TUNER_FLOOR
    ax.plot(hours[~none], late[~none], "o", ms=3, color=AUTO_COLOR, label="late share measured (hourly, as fed)")
    ax.plot(hours[none], late[none], "v", ms=3, color=AUTO_COLOR, alpha=0.35,
            label=f"no late request (drawn at {TUNER_FLOOR:g})")
    aims = np.array([np.nan if s.margin.aim is None else 1.0 - s.margin.aim for s in steps])
    ax.step(hours, aims, where="post", color="tab:green", lw=1.2, label="1 - aim of the margin held")
    ax.axhline(1.0 - auto.slo, color="tab:red", lw=0.8, ls="--", label=f"1 - target {auto.slo:g}")
    spans = runs(np.array([s.budget == "spent" for s in steps]))
    for i, (lo, hi) in enumerate(spans):
        ax.axvspan(hours[lo], hours[hi - 1] + 1.0, color="tab:red", alpha=0.07, lw=0,
                   label=None if i else "week's error budget spent (hourly choice, higher aim)")
    ax.set_yscale("log")
    ax.set_ylim(TUNER_FLOOR / 3, 30.0)  # the decades above 1 hold the legend, clear of the data
    ax.set_ylabel("late share (1 - on-time)")
    ax.set_xlabel("hours since trace start")
    ax.set_title(f"self-tuned --slo {auto.slo:g} hour by hour: what its tuner measured, the aim it "
                 "chose the margin for, and the margin")
    twin = ax.twinx()
    margin = auto.controller.margin[sc.warmup_minutes:sc.minutes]
    whole = len(margin) // 60 * 60
    # An hour without a decision is a gap in the line (nanmean would warn "Mean of empty slice").
    blocks = margin[:whole].reshape(-1, 60)
    decided = np.isfinite(blocks).sum(axis=1)
    hourly = np.where(decided > 0, np.nansum(blocks, axis=1) / np.maximum(decided, 1), np.nan)
    twin.step(sc.warmup_minutes / 60.0 + np.arange(len(hourly)), hourly, where="post",
              color="tab:brown", lw=0.8, alpha=0.8)
    twin.set_ylabel("margin held (provisioned / expected)", color="tab:brown")
    twin.set_ylim(0, max(1.0, float(np.nanmax(hourly)) if np.isfinite(hourly).any() else 1.0) * 1.6)
    ax.plot([], [], color="tab:brown", lw=0.8, label="margin, hourly mean (right axis)")  # one legend
    ax.legend(loc="upper left", fontsize=8, ncol=3)


FLOOR = 1e-6
"""Where a run without a late request is drawn on the log axis (log(0) has no place)."""


def _late(attainment: float) -> float:
    return max(FLOOR, 1 - attainment)


def plot_pareto(bt: Backtest, ax: Any) -> None:
    """Cost vs late share per policy; runs with no late request sit on a marked floor line."""
    on_floor = False
    for name, sweep in bt.sweeps.items():
        late = [_late(p.slo_attainment) for p in sweep.points]
        markers = ["v" if x <= FLOOR else "o" for x in late]
        for marker in ("o", "v"):
            xs = [p.gpu_hours for p, m in zip(sweep.points, markers, strict=True) if m == marker]
            ys = [x for x, m in zip(late, markers, strict=True) if m == marker]
            ax.scatter(xs, ys, s=14 if marker == "o" else 24, marker=marker, color=COLORS.get(name), alpha=0.6)
        on_floor = on_floor or "v" in markers
        front = pareto_frontier(sweep.points)
        ax.plot([p.gpu_hours for p in front], [_late(p.slo_attainment) for p in front],
                color=COLORS.get(name), lw=1.2, label=name)
    if bt.auto is not None:
        a = bt.auto
        ax.scatter([a.gpu_hours], [_late(a.slo_attainment)], marker="*", s=180, color=AUTO_COLOR,
                   zorder=5, label=f"self-tuned --slo {a.slo:g} (one run, no hindsight)")
    ax.axvline(bt.oracle_gpu_hours, color="black", ls=":", label="oracle GPU-hours")
    for slo in (0.99, 0.999):
        ax.axhline(1 - slo, color="gray", lw=0.5, ls="--")
        ax.annotate(f"{100 * slo:g} % on time", (0.01, 1 - slo), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=8, color="dimgray")
    if on_floor:
        ax.axhline(FLOOR, color="gray", lw=0.5, ls=":")
        ax.annotate("no late request at all (drawn at 1e-6, marked \u25bc)", (0.01, FLOOR),
                    xycoords=("axes fraction", "data"), ha="left", va="top", fontsize=8, color="dimgray")
    ax.set_yscale("log")
    ax.set_ylim(bottom=FLOOR / 5)  # room under the floor line for its label
    ax.set_xlabel("GPU-hours over the evaluation window")
    ax.set_ylabel("late share (1 - SLO attainment)")
    ax.set_title("Pareto: cost vs late requests (lower left is better)")
    ax.legend(loc="center right", fontsize=8)  # upper right is where never-on-time policies sit
