"""Where the self-tuned policy's cost comes from: its margin family against its margin choice.

``prewarm backtest --slo`` reports one point: the margin the tuner kept choosing. This benchmark
pins each margin of a family (factor x extra x spread x hold, the shapes the tuner chooses from)
for the whole trace, runs each through the same backtest, and prints:

1. the family's hindsight frontier (the cheapest fixed margin reaching 0.99, 0.9925, 0.995) beside
   each baseline's hindsight frontier and the self-tuned run: can prewarm's margins win at all,
   and how far is the tuner's choice from the best of them?
2. how well the tuner's replay predicts each margin: the simulated on-time share of the replayed
   window (the last two weeks) against the tuner's replayed share of the same minutes. A replay
   that calls lean margins worse than they are steers the tuner to fat ones.
3. one margin chosen on the warmup: for each aim, the cheapest margin whose warmup share (after
   its first day) reached it, and how it then did on the scored window - what a perfect replay
   of the past, pinned for the week and never re-tuned, would have bought.

::

    .venv/bin/python benchmarks/margin_family.py --trace ../shared/data/servegen/m-large_10min.csv \\
        --cold-start 10m --json out/family/m-large-10m.json --plot out/family/m-large-10m.png
    .venv/bin/python benchmarks/margin_family.py --trace ... --factors 1.35,2.0 --extras 0 --spreads 0
    .venv/bin/python benchmarks/margin_family.py --trace ... --on both   # + each on demand alone

Every run is the code ``prewarm backtest --slo`` runs (scenario, forecast tape, baselines, the
self-tuned run), with the tuner's step replaced by a fixed margin (``SelfTuned.retune``).
Runtime on 2 cores: the backtest once (~90 s on a two-week ServeGen trace), then ~2 s per margin
with ``--jobs 2`` (the 84 default margins: ~3 minutes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forecasting.traces import TraceError
from scaler.backtest.auto import AutoResult, SelfTuned, versus, warmup_past
from scaler.backtest.cli import UsageError, add_arguments, build_spec, load_scenario
from scaler.backtest.pareto import Point, cost_at_slo, pareto_frontier
from scaler.backtest.scenario import MINUTE, Scenario, ScenarioError
from scaler.backtest.sim import simulate
from scaler.backtest.sweep import BacktestSpec, run_backtest
from scaler.core.slo import REPLAY_SECONDS, Margin, TunerState, replayed_share

LEVELS = (0.99, 0.9925, 0.995)
WEEK = int(REPLAY_SECONDS // MINUTE)


class Pinned(SelfTuned):
    """The self-tuned controller with its tuner step replaced by one fixed margin."""

    pinned: Margin

    def retune(self, now: float, t: int, *, target: float, on_time: float | None,
               requests: float | None) -> TunerState:
        return replace(self.tuner, margin=self.pinned, tuned_at=now)


@dataclass(frozen=True)
class Row:
    margin: Margin
    slo_attainment: float
    gpu_hours: float
    week_simulated: float
    """On-time share of the replayed window (the last :data:`REPLAY_SECONDS`), simulated."""
    week_replayed: dict[str, float | None]
    """The same minutes' share in each replay model (see :data:`REPLAYS`)."""
    warmup_attainment: float = math.nan
    """On-time share over the warmup after its first day (what a user could have judged it on)."""
    warmup_gpu_hours: float = math.nan
    """GPU-hours over the same minutes."""


REPLAYS = ("tuner",)
"""Replay models set beside the simulation: the tuner's own (closed loop, with the HPA window)."""

# Set in the parent before the pool forks, read by the workers (the tape is too big to pickle).
_WORLD: dict[str, Any] = {}


def run_margin(margin: Margin) -> Row:
    """One fixed margin through the whole backtest (in a worker)."""
    scenario: Scenario = _WORLD["scenario"]
    spec: BacktestSpec = _WORLD["spec"]
    c = Pinned(_WORLD["model"], _WORLD["tape"], spec.lead_s, spec.cluster.node_provision_s, scenario.minutes,
               hpa_window_seconds=spec.control.scale_down_window_s)
    c.pinned = margin
    run = simulate(scenario, c, spec.cluster, spec.control)
    window, n = scenario.window, scenario.minutes
    week = slice(max(0, n - WEEK), n)
    replays = {"tuner": replayed_share(c.demand, c.base, c.replay, margin, step_seconds=MINUTE)}
    past = warmup_past(scenario)
    gpus = spec.cluster.gpus_per_replica
    return Row(margin, run.attainment(scenario.arrivals, window), run.gpu_hours(gpus, window),
               run.attainment(scenario.arrivals, week), replays,
               run.attainment(scenario.arrivals, past), run.gpu_hours(gpus, past))


def family(spec: BacktestSpec, scenario: Scenario, factors: list[float], extras: list[float],
           spreads: list[float], *, on_demand: tuple[bool, ...] = (False,)) -> list[Margin]:
    """The fixed margins: factor x extra (replicas) x spread x the tuner's two holds, on the
    forecast's peak and/or (``on_demand``) on demand alone (``Margin.forecast`` False)."""
    from scaler.core.slo import ReplaySpec

    replay = ReplaySpec.for_lead(spec.lead_s, step_seconds=MINUTE, capacity=scenario.capacity)
    return [Margin(f, e * scenario.capacity, s, hold_seconds=h * MINUTE, forecast=not d)
            for d, f, e, s, h in itertools.product(on_demand, factors, extras, spreads, replay.holds())]


def label(m: Margin, capacity: float) -> str:
    extra = f" +{m.extra / capacity:g}r" if m.extra else ""
    spread = f" spread {m.spread:g}" if m.spread else ""
    on = "" if m.forecast else " on demand"
    return f"x{m.factor:g}{extra}{spread} hold {m.hold_seconds / 60:g}m{on}"


def floats(parser: argparse.ArgumentParser, text: str, flag: str) -> list[float]:
    """A comma-separated list of finite numbers >= 0 (usage error naming ``flag`` otherwise)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag} {text!r}: a comma-separated list of numbers")
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        parser.error(f"{flag} {text!r}: needs finite numbers >= 0")
    return values


def report(rows: list[Row], auto: AutoResult, baselines: dict[str, list[Point]], capacity: float,
           oracle: float) -> dict[str, Any]:
    """Print the two tables; the same as a JSON-ready dict."""
    points = [Point(i, r.slo_attainment, r.gpu_hours, label(r.margin, capacity)) for i, r in enumerate(rows)]
    fronts = {"family": points, **baselines}
    print(f"\nself-tuned: {auto.slo_attainment:.5f} on time, {auto.gpu_hours:,.0f} GPU-h "
          f"({auto.gpu_hours / oracle:.2f}x oracle)\n")
    print("| hindsight cost at | " + " | ".join(fronts) + " | family / cheapest baseline |")
    print("|---" * (len(fronts) + 2) + "|")
    levels: dict[str, dict[str, float | None]] = {}
    for x in LEVELS:
        costs = {name: cost_at_slo(p, x) for name, p in fronts.items()}
        levels[str(x)] = costs
        base = [c for n, c in costs.items() if n != "family" and c is not None]
        ratio = f"{costs['family'] / min(base):.2f}x" if costs["family"] and base else "-"
        print(f"| {x} | " + " | ".join(f"{c:,.0f}" if c else "-" for c in costs.values()) + f" | {ratio} |")
    print("\n| margin | attainment | GPU-h | replayed window simulated | " + " | ".join(REPLAYS) + " |")
    print("|---" * (4 + len(REPLAYS)) + "|")
    frontier = {p.knob for p in pareto_frontier(points)}
    for i, r in enumerate(rows):
        mark = " *" if i in frontier else ""
        shares = " | ".join("-" if v is None else f"{v:.4f}" for v in r.week_replayed.values())
        print(f"| {label(r.margin, capacity)}{mark} | {r.slo_attainment:.4f} | {r.gpu_hours:,.0f} | "
              f"{r.week_simulated:.4f} | {shares} |")
    print("\n(* on the family's frontier)")
    chosen = warmup_choices(rows, fronts, capacity)
    print("\nOne margin chosen on the warmup (the cheapest there reaching the aim), scored on the window:\n")
    print("| aim on the warmup | margin | warmup | scored | GPU-h | / cheapest hindsight baseline |")
    print("|---|---|---|---|---|---|")
    for c in chosen:
        ratio = "-" if c["vs_best_baseline"] is None else f"{c['vs_best_baseline']:.3f}"
        print(f"| {c['aim']} | {c['label']} | {c['warmup']:.4f} | {c['slo_attainment']:.4f} | "
              f"{c['gpu_hours']:,.0f} | {ratio} |")
    return {
        "self_tuned": {"slo_attainment": auto.slo_attainment, "gpu_hours": auto.gpu_hours},
        "oracle_gpu_hours": oracle, "cost_at": levels,
        "margins": [{"factor": r.margin.factor, "extra_replicas": r.margin.extra / capacity,
                     "spread": r.margin.spread, "hold_s": r.margin.hold_seconds,
                     "slo_attainment": r.slo_attainment, "gpu_hours": r.gpu_hours,
                     "week_simulated": r.week_simulated, "week_replayed": r.week_replayed,
                     "warmup_attainment": r.warmup_attainment, "warmup_gpu_hours": r.warmup_gpu_hours}
                    for r in rows],
        "chosen_on_warmup": chosen,
    }


WARMUP_AIMS = (0.99, 0.995, 0.998)


def warmup_choices(rows: list[Row], fronts: dict[str, list[Point]], capacity: float) -> list[dict[str, Any]]:
    """For each aim: the margin a user would pin after the warmup - the cheapest one whose warmup
    share reached the aim (a perfect replay of the past, no online tuning) - and how it did on
    the scored window, against the cheapest baseline's hindsight cost at the attainment it got."""
    out: list[dict[str, Any]] = []
    baselines = {n: p for n, p in fronts.items() if n != "family"}
    for aim in WARMUP_AIMS:
        ok = [r for r in rows if r.warmup_attainment >= aim]
        if not ok:
            continue
        r = min(ok, key=lambda r: r.warmup_gpu_hours)
        _, _, best_ratio = versus(r.gpu_hours, r.slo_attainment, baselines)
        out.append({"aim": aim, "label": label(r.margin, capacity),
                    "warmup": r.warmup_attainment, "slo_attainment": r.slo_attainment,
                    "gpu_hours": r.gpu_hours, "vs_best_baseline": best_ratio})
    return out


def plot(rows: list[Row], auto: AutoResult, baselines: dict[str, list[Point]], path: Path) -> None:
    from forecasting.extras import pyplot

    plt = pyplot("margin_family")
    fig, ax = plt.subplots(figsize=(8, 5))

    def late(attainment: float) -> float:  # the x axis: late share, log scale
        return max(1.0 - attainment, 1e-5)

    ax.scatter([late(r.slo_attainment) for r in rows], [r.gpu_hours for r in rows], s=12,
               color="0.6", label="fixed margins (family)")
    for name, points in {"family frontier": [Point(0, r.slo_attainment, r.gpu_hours) for r in rows],
                         **baselines}.items():
        front = pareto_frontier(points)
        ax.plot([late(p.slo_attainment) for p in front], [p.gpu_hours for p in front], marker=".",
                label=name if name == "family frontier" else f"{name} (hindsight)")
    ax.scatter([late(auto.slo_attainment)], [auto.gpu_hours], marker="*", s=180, color="red",
               zorder=5, label="self-tuned (no hindsight)")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("late share (1 - attainment), log; right is better")
    ax.set_ylabel("GPU-hours over the scored window")
    ax.set_title("prewarm's fixed margins vs its self-tuned choice vs the baselines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("::")[1].split("Every run")[0])
    parser.add_argument("--trace", required=True, help="trace CSV (as prewarm backtest --trace)")
    parser.add_argument("--cold-start", default="10m", help="cold start (default 10m)")
    parser.add_argument("--slo", default="0.99", help="the SLO the self-tuned run is given (0.99)")
    parser.add_argument("--factors", default="1.2,1.35,1.5,1.7,2.0,2.5,3.0",
                        help="multiplicative margins (1.2,1.35,1.5,1.7,2.0,2.5,3.0)")
    parser.add_argument("--extras", default="0,1", help="additive margins in replicas (0,1)")
    parser.add_argument("--spreads", default="0,0.5,1", help="excursion multipliers (0,0.5,1)")
    parser.add_argument("--on", choices=("forecast", "demand", "both"), default="forecast",
                        help="apply each margin to the forecast's peak (default), to demand alone "
                             "(a reactive margin), or both")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, help="write a PNG: the family, the frontiers, the choice")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    factors, extras = floats(parser, args.factors, "--factors"), floats(parser, args.extras, "--extras")
    spreads = floats(parser, args.spreads, "--spreads")

    backtest = argparse.ArgumentParser()
    add_arguments(backtest)
    bt_args = backtest.parse_args(["--trace", args.trace, "--cold-start", args.cold_start,
                                   "--slo", args.slo, "--jobs", str(args.jobs), "--no-progress"])
    try:
        spec = build_spec(bt_args)
        scenario = load_scenario(bt_args, spec)
    except (UsageError, ScenarioError, TraceError) as exc:
        parser.exit(2, f"margin_family: error: {exc}\n")
    started = time.perf_counter()
    bt = run_backtest(scenario, spec)  # forecasts, baselines, oracle and the self-tuned run
    assert bt.tape is not None and bt.auto is not None
    baselines, auto, oracle = {n: s.points for n, s in bt.sweeps.items()}, bt.auto, bt.oracle_gpu_hours
    on_demand = {"forecast": (False,), "demand": (True,), "both": (False, True)}[args.on]
    margins = family(spec, scenario, factors, extras, spreads, on_demand=on_demand)
    print(f"{scenario.name}, cold start {args.cold_start}: baselines and self-tuned run in "
          f"{time.perf_counter() - started:.0f} s; {len(margins)} fixed margins next", file=sys.stderr)
    # The self-tuned run's own model settings: every pinned run differs from it in the margin only.
    _WORLD.update(scenario=scenario, spec=spec, tape=bt.tape, model=auto.controller.model)
    rows: list[Row] = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for i, row in enumerate(pool.imap(run_margin, margins), 1):
            rows.append(row)
            print(f"\r{i}/{len(margins)} margins, {time.perf_counter() - started:.0f} s",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    figures = report(rows, auto, baselines, scenario.capacity, oracle)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trace": args.trace, "cold_start": args.cold_start, **figures},
                                        indent=1) + "\n")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, auto, baselines, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
