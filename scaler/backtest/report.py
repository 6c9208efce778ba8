"""What a backtest prints and writes: the table, the JSON (docs/BACKTEST.md), the plot.

Every comparison names the cheapest baseline at that SLO, the static count included: a headline
that compared predictive with reactive alone would hide the traffic where a fixed count is the
cheapest answer.

JSON contract (docs/BACKTEST.md, "Method"), plus context keys a reader needs to reproduce a
figure (settings, warmup, capacity, forecaster)::

    {"trace": str, "minutes": int, "cold_start_s": float | [lo, hi], "oracle": {"gpu_hours": x},
     "policies": {"predictive": {"points": [{"knob": k, "slo_attainment": s, "gpu_hours": g}, ...],
                                 "cost_at_slo": {"0.99": g_or_null, "0.999": g_or_null}}, ...}}

``minutes`` counts the evaluation window (the minutes every figure is taken over).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from scaler.backtest.auto import BASELINES, AutoResult
from scaler.backtest.pareto import Point, pareto_frontier, reaching
from scaler.backtest.sim import RunResult
from scaler.backtest.sweep import SLOS, Backtest, Sweep
from scaler.core.fields import format_duration

COLORS = {"predictive": "tab:blue", "reactive-util": "tab:orange", "reactive-queue": "tab:red",
          "static": "tab:gray", "oracle": "black"}


def _ratio(value: float | None, base: float) -> float | None:
    return None if value is None or base <= 0 else value / base


def _point_json(name: str, p: Point) -> dict[str, Any]:
    out: dict[str, Any] = {"knob": p.knob, "label": p.label, "slo_attainment": p.slo_attainment,
                           "gpu_hours": p.gpu_hours}
    if name == "predictive":
        out["headroom"] = p.headroom
    return out


def _policy_json(sweep: Sweep, oracle: float) -> dict[str, Any]:
    costs = {str(slo): sweep.cost_at(slo) for slo in SLOS}
    return {
        "points": [_point_json(sweep.name, p) for p in sweep.points],
        "cost_at_slo": costs,
        "cost_at_slo_vs_oracle": {k: _ratio(v, oracle) for k, v in costs.items()},
    }


def _settings_json(bt: Backtest) -> dict[str, Any]:
    s, c, ctl = bt.spec, bt.spec.cluster, bt.spec.control
    return {
        "node_provision_s": c.node_provision_s, "gpus_per_replica": c.gpus_per_replica,
        "polling_interval_s": ctl.polling_s, "hpa_tolerance": ctl.tolerance,
        "scale_down_window_s": ctl.scale_down_window_s, "min_replicas": ctl.min_replicas,
        "max_replicas": ctl.max_replicas, "peak_replicas": s.peak_replicas,
        "refit_every_s": s.refit_every_s, "predictive_stabilization_s": s.stabilization_s,
        "lead_s": s.lead_s,
    }


def _forecaster_json(bt: Backtest) -> dict[str, Any] | None:
    if bt.tape is None:
        return None
    notes = [n for n in bt.tape.notes.values() if n.startswith("forecast demoted")]
    return {"fits": len(bt.tape.fits), "models": bt.tape.models(),
            "demoted_share": bt.tape.demoted_share(),
            "last_demotion": notes[-1] if notes else None}


def cheapest_baseline(bt: Backtest, slo: float) -> tuple[str, float] | None:
    """The baseline (reactive-util, reactive-queue or static) with the lowest cost at ``slo``."""
    costs = [(name, bt.sweeps[name].cost_at(slo)) for name in BASELINES if name in bt.sweeps]
    reached = [(n, c) for n, c in costs if c is not None]
    return min(reached, key=lambda nc: nc[1]) if reached else None


def _versus_cheapest(bt: Backtest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    predictive = bt.sweeps.get("predictive")
    for slo in SLOS:
        best = cheapest_baseline(bt, slo)
        cost = predictive.cost_at(slo) if predictive else None
        out[str(slo)] = {"cheapest_baseline": best[0] if best else None,
                         "gpu_hours": best[1] if best else None,
                         "ratio": _ratio(cost, best[1]) if best else None}
    return out


def _versus_reactive(bt: Backtest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    predictive = bt.sweeps.get("predictive")
    for slo in SLOS:
        best = bt.best_reactive(slo)
        cost = predictive.cost_at(slo) if predictive else None
        out[str(slo)] = {"best_reactive": best[0] if best else None,
                         "ratio": _ratio(cost, best[1]) if best else None}
    return out


def to_json(bt: Backtest) -> dict[str, Any]:
    """The backtest JSON (contract keys first, then context)."""
    sc, oracle = bt.scenario, bt.oracle_gpu_hours
    lo, hi = bt.spec.cluster.cold_start_s
    return {
        "trace": sc.name,
        "minutes": sc.minutes - sc.warmup_minutes,
        "cold_start_s": lo if lo == hi else [lo, hi],
        "oracle": {"gpu_hours": oracle},
        "policies": {name: _policy_json(s, oracle) for name, s in bt.sweeps.items()},
        "predictive_vs_cheapest_baseline": _versus_cheapest(bt),
        "predictive_vs_best_reactive": _versus_reactive(bt),
        "warmup_minutes": sc.warmup_minutes,
        "trace_minutes": sc.minutes,
        "capacity_per_replica": sc.capacity,
        "filled_buckets": sc.filled_buckets,
        "settings": _settings_json(bt),
        "forecaster": _forecaster_json(bt),
        "seconds": bt.seconds,
        **({"auto": auto_json(bt.auto)} if bt.auto is not None else {}),
    }


def auto_json(auto: AutoResult) -> dict[str, Any]:
    """EVALUATION.md's ``auto`` block (contract keys first), plus the tuner's last margin."""
    margin = auto.controller.tuner.margin
    return {
        "slo": auto.slo,
        "slo_attainment": auto.slo_attainment,
        "gpu_hours": auto.gpu_hours,
        "vs_oracle": auto.vs_oracle,
        "vs_baselines": auto.vs_baselines,
        "best_baseline_ratio": auto.best_baseline_ratio,
        "baselines_tuned_on_past": {
            name: {"knob": t.knob, "slo_attainment": t.slo_attainment, "gpu_hours": t.gpu_hours,
                   "label": t.label, "reached_on_warmup": t.reached}
            for name, t in auto.tuned_on_past.items()},
        "best_baseline": auto.best_baseline,
        "last_margin": {"factor": margin.factor, "extra": margin.extra,
                        "cap": margin.cap if math.isfinite(margin.cap) else None,
                        "hold_s": margin.hold_seconds, "expected": margin.expected,
                        "aim": margin.aim, "safety": auto.controller.tuner.safety},
    }


def print_auto(auto: AutoResult, oracle: float, out: TextIO) -> None:
    """The no-hindsight block: the self-tuned run beside every baseline at its attainment."""
    print(f"\nself-tuned (--slo {auto.slo:g}, one run, no hindsight): attainment "
          f"{auto.slo_attainment:.5f}, {auto.gpu_hours:.1f} GPU-hours, {auto.vs_oracle:.3f} x oracle "
          f"({oracle:.1f})", file=out)
    for name, ratio in auto.vs_baselines.items():
        shown = "never reaches it" if ratio is None else f"{ratio:.3f}"
        print(f"  / {name:<15} hindsight cost at {auto.slo_attainment:.5f}: {shown}", file=out)
    if auto.best_baseline_ratio is None:
        print("  no baseline reaches that attainment at any knob", file=out)
    else:
        print(f"  / cheapest baseline ({auto.best_baseline}): {auto.best_baseline_ratio:.3f}", file=out)
    for name, t in auto.tuned_on_past.items():
        how = "met it" if t.reached else "none met it; closest"
        print(f"  {name:<15} tuned on the warmup ({how}): {t.label:<12} attainment "
              f"{t.slo_attainment:.5f}, {t.gpu_hours:.1f} GPU-hours "
              f"(auto / it: {auto.gpu_hours / t.gpu_hours:.3f})", file=out)


def _fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or a dash as wide as the spec's width for None."""
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def print_table(bt: Backtest, out: TextIO) -> None:
    """Summary per policy, predictive vs best reactive, then every sweep point (* = frontier)."""
    sc, oracle = bt.scenario, bt.oracle_gpu_hours
    report = to_json(bt)
    cold = report["cold_start_s"]
    cold_text = f"{cold / 60:g}m" if not isinstance(cold, list) else f"{cold[0] / 60:g}m:{cold[1] / 60:g}m"
    print(f"\nbacktest {sc.name}: {report['minutes']} minutes evaluated after "
          f"{format_duration(sc.warmup_minutes * 60.0)} warmup; cold start {cold_text}; "
          f"c = {sc.capacity:.4g} requests/min per replica; lead {bt.spec.lead_s:g} s", file=out)
    print(f"{'policy':<15} {'cost@0.99':>10} {'x oracle':>9} {'cost@0.999':>11} {'x oracle':>9} "
          f"{'best SLO':>9} {'points':>6}", file=out)
    print(f"{'oracle':<15} {oracle:>10.1f} {1.0:>9.3f} {oracle:>11.1f} {1.0:>9.3f} {1.0:>9.5f} "
          f"{1:>6}", file=out)
    for name, sweep in bt.sweeps.items():
        c99, c999 = sweep.cost_at(0.99), sweep.cost_at(0.999)
        best = max(p.slo_attainment for p in sweep.points)
        print(f"{name:<15} {_fmt(c99, '10.1f')} {_fmt(_ratio(c99, oracle), '9.3f')} "
              f"{_fmt(c999, '11.1f')} {_fmt(_ratio(c999, oracle), '9.3f')} {best:>9.5f} "
              f"{len(sweep.points):>6}", file=out)
    print("GPU-hours over the evaluation window; cost@x = cheapest GPU-hours reaching SLO "
          "attainment x on the policy's Pareto frontier (interpolated), - = never reached", file=out)
    _print_headlines(bt, out)
    _print_forecaster(report["forecaster"], out)
    if bt.auto is not None:
        print_auto(bt.auto, oracle, out)
    _print_points(bt, out)


def headline(bt: Backtest, slo: float) -> str:
    """One sentence per SLO: the cheapest baseline by name, every other baseline beside it, and
    the predictive sweep as a ratio to that cheapest one (hindsight on both sides)."""
    best = cheapest_baseline(bt, slo)
    if best is None:
        return f"at {100 * slo:g} % on time: no baseline reaches it at any knob"
    name, cost = best
    others = ", ".join(
        f"{n} {_gpu_hours(bt.sweeps[n].cost_at(slo))}" for n in BASELINES
        if n in bt.sweeps and n != name)
    text = (f"at {100 * slo:g} % on time: cheapest baseline {name}, {cost:.1f} GPU-hours"
            + (f" (others: {others})" if others else ""))
    predictive = bt.sweeps.get("predictive")
    if predictive is not None:
        mine = predictive.cost_at(slo)
        text += ("; predictive never reaches it" if mine is None else
                 f"; predictive {mine:.1f} = {mine / cost:.3f} x {name}"
                 + (" (cheaper)" if mine < cost else " (dearer)" if mine > cost else ""))
    return text


def _gpu_hours(value: float | None) -> str:
    return "never reaches it" if value is None else f"{value:.1f}"


def _print_headlines(bt: Backtest, out: TextIO) -> None:
    for slo in SLOS:
        print(headline(bt, slo), file=out)


def _print_forecaster(info: dict[str, Any] | None, out: TextIO) -> None:
    """Which forecasters the refits chose, and how often the forecast was demoted (and why)."""
    if info is None:
        return
    models = ", ".join(f"{name} x{count}" for name, count in info["models"].items())
    line = f"forecaster: {info['fits']} fits ({models})"
    if info["demoted_share"] > 0:
        line += (f"; demoted to reactive on {100 * info['demoted_share']:.1f} % of decision minutes "
                 f"(last: {info['last_demotion']})")
    print(line, file=out)


def _print_points(bt: Backtest, out: TextIO) -> None:
    print(f"\n{'policy':<15} {'knob':<14} {'SLO attain.':>11} {'GPU-hours':>10}", file=out)
    for name, sweep in bt.sweeps.items():
        frontier = {id(p) for p in pareto_frontier(sweep.points)}
        for p in sorted(sweep.points, key=lambda p: p.gpu_hours):
            mark = "*" if id(p) in frontier else " "
            print(f"{name:<15} {p.label:<14} {p.slo_attainment:>11.5f} {p.gpu_hours:>10.1f} {mark}",
                  file=out)


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
    fig, axes = plt.subplots(3, 1, figsize=(13, 11))
    plot_forecast(bt, axes[0])
    plot_replicas(bt, axes[1])
    plot_pareto(bt, axes[2])
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
    ax.set_title(f"{sc.name}: demand vs forecast one lead time ahead")
    ax.legend(loc="upper left", fontsize=8)


def zoom(bt: Backtest, minutes: int = 2 * 1440) -> np.ndarray:
    """Up to two days of the evaluation window centred on its busiest minute (readable steps)."""
    sc = bt.scenario
    lo = sc.warmup_minutes
    peak = lo + int(np.argmax(sc.demand[lo:]))
    start = max(lo, min(peak - minutes // 2, sc.minutes - minutes))
    return np.arange(start, min(sc.minutes, start + minutes))


def plot_replicas(bt: Backtest, ax: Any) -> None:
    sc = bt.scenario
    window = zoom(bt)
    hours = _hours(bt, window)
    ax.plot(hours, sc.demand[window], color="black", lw=0.5, alpha=0.6, label="demand")
    ax.plot(hours, bt.oracle[window], color=COLORS["oracle"], lw=0.8, ls=":", label="oracle (billed)")
    for name, sweep in bt.sweeps.items():
        point, run = shown_run(sweep)
        reached = point.slo_attainment >= 0.99
        ax.step(hours, run.ready[window], where="post", color=COLORS.get(name), lw=0.8 if reached else 0.4,
                alpha=0.9 if reached else 0.25, label=f"{name} {point.label} (ready)")
    if bt.auto is not None:
        ax.step(hours, bt.auto.run.ready[window], where="post", color=AUTO_COLOR, lw=1.4,
                label=f"self-tuned --slo {bt.auto.slo:g} (ready)")
    ax.set_ylabel("replicas")
    ax.set_xlabel("hours since trace start")
    ax.set_title("ready replicas per policy at the knob where it reaches 99 % SLO (or its best), "
                 "two days around the peak")
    ax.legend(loc="upper left", fontsize=8, ncol=2)


AUTO_COLOR = "tab:purple"


def plot_pareto(bt: Backtest, ax: Any) -> None:
    for name, sweep in bt.sweeps.items():
        late = [max(1e-6, 1 - p.slo_attainment) for p in sweep.points]
        ax.scatter([p.gpu_hours for p in sweep.points], late, s=12, color=COLORS.get(name),
                   alpha=0.6)
        front = pareto_frontier(sweep.points)
        ax.plot([p.gpu_hours for p in front], [max(1e-6, 1 - p.slo_attainment) for p in front],
                color=COLORS.get(name), lw=1.2, label=name)
    if bt.auto is not None:
        a = bt.auto
        ax.scatter([a.gpu_hours], [max(1e-6, 1 - a.slo_attainment)], marker="*", s=180, color=AUTO_COLOR,
                   zorder=5, label=f"self-tuned --slo {a.slo:g} (one run, no hindsight)")
    ax.axvline(bt.oracle_gpu_hours, color="black", ls=":", label="oracle GPU-hours")
    for slo in (0.99, 0.999):
        ax.axhline(1 - slo, color="gray", lw=0.5, ls="--")
        ax.annotate(f"{100 * slo:g} % on time", (0.01, 1 - slo), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=7, color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("GPU-hours over the evaluation window")
    ax.set_ylabel("late share (1 - SLO attainment;\nno late request drawn at 1e-6)")
    ax.set_title("Pareto: cost vs late requests (lower left is better)")
    ax.legend(loc="upper right", fontsize=8)
