"""The figures of docs/BACKTEST.md: every ServeGen trace x cold start, goals checked, timed.

Runs ``python -m scaler.backtest.cli`` (the same code as ``prewarm backtest``) once per case, as
a separate process so each wall time includes imports, the fit pool and every sweep - what the
"14 days, all policies and sweeps in <= 5 minutes on 2 cores" goal measures. Writes each JSON
and PNG to ``--out`` (default ``out/backtest``, outside git) and prints a Markdown table::

    .venv/bin/python benchmarks/backtest_figures.py
    .venv/bin/python benchmarks/backtest_figures.py --traces m-small --cold-starts 30m

Goals (issue 6): m-small at 30 min: predictive cost_at_slo(0.99) <= 1.3 x oracle and <= 0.7 x
the best reactive policy; every case: <= 1.05 x the best reactive policy.
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
DATA = ROOT.parent / "shared" / "data" / "servegen"


def run_case(trace: str, cold: str, out: Path, extra: list[str]) -> tuple[dict[str, Any], float, str]:
    """One backtest as a subprocess; its JSON, wall seconds and the command line used."""
    stem = f"{trace}-{cold}"
    rel = Path("..") / "shared" / "data" / "servegen" / f"{trace}_10min.csv"
    argv = ["--trace", str(rel), "--cold-start", cold, "--json", str(out / f"{stem}.json"),
            "--plot", str(out / f"{stem}.png"), "--no-progress", *extra]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaler.backtest.cli", *argv], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = json.loads((ROOT / out / f"{stem}.json").read_text())
    return report, seconds, "prewarm backtest " + " ".join(argv)


def row(trace: str, cold: str, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The figures of one case, goals included."""
    oracle = report["oracle"]["gpu_hours"]
    pol = report["policies"]
    cost = {name: block["cost_at_slo"]["0.99"] for name, block in pol.items()}
    reactive = {n: c for n, c in cost.items() if n.startswith("reactive") and c is not None}
    best = min(reactive.items(), key=lambda nc: nc[1]) if reactive else None
    pred = cost.get("predictive")
    vs_reactive = pred / best[1] if pred is not None and best is not None else None
    return {"trace": trace, "cold": cold, "oracle": oracle, "cost": cost, "best": best,
            "vs_oracle": pred / oracle if pred is not None else None, "vs_reactive": vs_reactive,
            "seconds": seconds, "fits": (report.get("forecaster") or {}).get("models")}


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def verdict(r: dict[str, Any]) -> str:
    """Goals of this case: <= 1.05 x best reactive everywhere; m-small 30m: 1.3 x oracle, 0.7 x."""
    vs_r, vs_o = r["vs_reactive"], r["vs_oracle"]
    checks = []
    if r["best"] is None:
        checks.append("no reactive policy reaches 0.99" + ("" if r["cost"]["predictive"] is None
                                                          else ": predictive does (met)"))
    else:
        checks.append(f"<=1.05x reactive {'met' if vs_r is not None and vs_r <= 1.05 else 'MISSED'}")
    if r["trace"] == "m-small" and r["cold"] == "30m":
        checks.append(f"<=1.3x oracle {'met' if vs_o is not None and vs_o <= 1.3 else 'MISSED'}")
        checks.append(f"<=0.7x reactive {'met' if vs_r is not None and vs_r <= 0.7 else 'MISSED'}")
    return "; ".join(checks)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| trace | cold start | oracle GPU-h | predictive | reactive-util | reactive-queue | static "
            "| predictive / oracle | predictive / best reactive | goals | wall s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        c = r["cost"]
        lines.append(
            f"| {r['trace']} | {r['cold']} | {r['oracle']:.1f} | {fmt(c.get('predictive'))} "
            f"| {fmt(c.get('reactive-util'))} | {fmt(c.get('reactive-queue'))} | {fmt(c.get('static'))} "
            f"| {fmt(r['vs_oracle'], '.3f')} | {fmt(r['vs_reactive'], '.3f')} | {verdict(r)} "
            f"| {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", default="m-small,m-mid,m-large")
    parser.add_argument("--cold-starts", default="10m,30m")
    parser.add_argument("--out", type=Path, default=Path("out") / "backtest",
                        help="relative to the repository root (default out/backtest)")
    parser.add_argument("extra", nargs="*", help="more flags for every backtest (after --)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} is missing (../shared/data beside the repository)", file=sys.stderr)
        return 2
    (ROOT / args.out).mkdir(parents=True, exist_ok=True)
    rows, commands = [], []
    for trace in args.traces.split(","):
        for cold in args.cold_starts.split(","):
            report, seconds, command = run_case(trace, cold, args.out, args.extra)
            rows.append(row(trace, cold, report, seconds))
            commands.append(command)
            print(f"{trace} {cold}: {seconds:.0f} s", file=sys.stderr)
    print("GPU-hours at 99 % SLO attainment (cost_at_slo(0.99)) over the 7-day evaluation window\n")
    print(table(rows))
    print("\nCommands:\n\n" + "\n".join(f"    {c}" for c in commands))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
