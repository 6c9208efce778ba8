"""The no-hindsight figures of docs/BACKTEST.md: ``prewarm backtest --slo`` on every trace x cold start.

One backtest process per case (the same code as ``prewarm backtest``), JSON and PNG to ``--out``
(default ``out/slo``, outside git), then a Markdown table of the ``auto`` block and the done-when
checks of issue 10::

    .venv/bin/python benchmarks/slo_figures.py                       # ServeGen + Azure, 10m and 30m
    .venv/bin/python benchmarks/slo_figures.py --traces m-small --cold-starts 30m
    .venv/bin/python benchmarks/slo_figures.py --extra-dir out/unseen  # + every CSV there (unseen traffic)
    .venv/bin/python benchmarks/slo_figures.py --report               # the table from existing JSON

Checks per case: attainment >= the SLO; GPU-hours <= 1.0x the cheapest hindsight baseline at the
attainment reached (``best_baseline_ratio``); cheaper than every warmup-tuned baseline that
reached that attainment on the scored week.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("..") / "shared" / "data"
TRACES = {
    "m-small": SHARED / "servegen" / "m-small_10min.csv",
    "m-mid": SHARED / "servegen" / "m-mid_10min.csv",
    "m-large": SHARED / "servegen" / "m-large_10min.csv",
    "azure-code": SHARED / "azure_llm_2023" / "code_1min.csv",
    "azure-conv": SHARED / "azure_llm_2023" / "conv_1min.csv",
}
SHORT = {"azure-code", "azure-conv"}
"""One-hour traces: a 15-minute warmup (the tuner never gets its day of history there)."""


def run_case(name: str, trace: Path, cold: str, out: Path, slo: float) -> float:
    """One backtest as a subprocess (run from the project root, ``out`` relative to it)."""
    stem = f"{name}-{cold}"
    argv = ["--trace", str(trace), "--cold-start", cold, "--slo", f"{slo:g}", "--no-progress",
            "--json", str(out / f"{stem}.json"), "--plot", str(out / f"{stem}.png")]
    if name in SHORT:
        argv += ["--warmup", "15m"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaler.backtest.cli", *argv], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    (ROOT / out / f"{stem}.cmd").write_text("prewarm backtest " + " ".join(argv) + f"\n{seconds:.0f}\n")
    return seconds


def checks(report: dict[str, Any]) -> dict[str, Any]:
    auto = report["auto"]
    reached = auto["slo_attainment"]
    past = auto["baselines_tuned_on_past"]
    # "cheaper than every warmup-tuned baseline that reaches its attainment"
    rivals = {n: b for n, b in past.items() if b["slo_attainment"] >= reached}
    beats_past = all(auto["gpu_hours"] < b["gpu_hours"] for b in rivals.values())
    ratio = auto["best_baseline_ratio"]
    return {"attained": reached >= auto["slo"], "le_best": ratio is None or ratio <= 1.0,
            "beats_past": beats_past, "rivals": sorted(rivals)}


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def table(out: Path, names: list[str], colds: list[str]) -> None:
    print("| trace | cold | attainment | GPU-h | x oracle | / cheapest hindsight baseline | "
          "warmup-tuned baselines (attainment, GPU-h; * = a user's pick) | checks | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        for cold in colds:
            path = out / f"{name}-{cold}.json"
            if not path.exists():
                continue
            report = json.loads(path.read_text())
            auto, c = report["auto"], checks(report)
            # the one a user without prewarm would deploy on the warmup's evidence is starred
            past = "; ".join(f"{n} {b['label']}{' *' if n == auto.get('picked_on_past') else ''}: "
                             f"{b['slo_attainment']:.4f}, {b['gpu_hours']:.0f}"
                             for n, b in auto["baselines_tuned_on_past"].items())
            cmd = out / f"{name}-{cold}.cmd"
            wall = cmd.read_text().split("\n")[1] if cmd.exists() else "-"
            marks = " ".join(f"{k}={'yes' if v else 'NO'}" for k, v in c.items() if isinstance(v, bool))
            best = f"{fmt(auto['best_baseline_ratio'])} ({auto.get('best_baseline') or 'none reach it'})"
            print(f"| {name} | {cold} | {auto['slo_attainment']:.5f} | {auto['gpu_hours']:.1f} | "
                  f"{auto['vs_oracle']:.3f} | {best} | {past} | {marks} | {wall} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", default=",".join(TRACES),
                        help=f"comma-separated, of {', '.join(TRACES)} (default: all; '' for none, "
                             "with --extra-dir)")
    parser.add_argument("--cold-starts", default="10m,30m", help="default 10m,30m")
    parser.add_argument("--extra-dir", type=Path, help="also every *.csv in this folder")
    parser.add_argument("--slo", type=float, default=0.99, help="on-time target (default 0.99)")
    parser.add_argument("--out", type=Path, default=Path("out/slo"))
    parser.add_argument("--report", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    names = [n for n in args.traces.split(",") if n]
    if unknown := [n for n in names if n not in TRACES]:
        parser.error(f"--traces: unknown {', '.join(unknown)} (known: {', '.join(TRACES)})")
    traces = {n: TRACES[n] for n in names}
    if args.extra_dir is not None:
        traces.update({p.stem: p.resolve() for p in sorted(args.extra_dir.glob("*.csv"))})
    colds = args.cold_starts.split(",")
    (ROOT / args.out).mkdir(parents=True, exist_ok=True)
    if not args.report:
        for name, trace in traces.items():
            for cold in colds:
                seconds = run_case(name, trace, cold, args.out, args.slo)
                print(f"{name} {cold}: {seconds:.0f} s", file=sys.stderr, flush=True)
    table(ROOT / args.out, list(traces), colds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
