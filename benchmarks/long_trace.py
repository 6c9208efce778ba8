"""How long ``forecast-eval`` and ``backtest`` take on a long trace (issue 10: cost must not grow
with the trace's length; goal <= 3 minutes each on 2 cores).

Writes a synthetic trace (``forecasting.traces.synthetic_trace``: daily + weekly cycle, Poisson
noise; default 215 days at 30-minute steps, like a half-year export) into a temporary folder,
runs both commands on it as the ``prewarm`` console script does, each in its own process, and
prints a Markdown table: wall and CPU seconds, peak memory, and what each run reports about
itself (backtest phases, forecast-eval origins and fit time)::

    .venv/bin/python benchmarks/long_trace.py
    .venv/bin/python benchmarks/long_trace.py --days 60 --step 60 --only backtest

Nothing is written to the repository: the trace and the JSON reports live in the temporary
folder, which is removed at the end (``--keep DIR`` keeps them there instead).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("forecast-eval", "backtest")


def prewarm() -> list[str]:
    """The ``prewarm`` console script of this interpreter's environment (or its entry point)."""
    script = Path(sys.executable).with_name("prewarm")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from scaler.cli import main; raise SystemExit(main())"]


def timed(argv: list[str]) -> tuple[float, float, int]:
    """Run ``argv``; wall seconds, CPU seconds (user + system, children included), peak RSS MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss // 1024  # the largest child so far (kB on Linux)


def details(command: str, report: dict[str, Any]) -> str:
    """What the run says about its own cost."""
    if command == "backtest":
        phases = ", ".join(f"{k} {v:.0f}" for k, v in report.get("seconds", {}).items())
        replayed = (report["trace_minutes"] - report.get("skipped_minutes", 0)) / 1440
        return (f"scored {report['minutes'] / 1440:g} d, replayed {replayed:g} d of "
                f"{report['trace_minutes'] / 1440:g} (--eval-span); phases s: {phases}")
    auto = report["models"]["auto"]
    history = report.get("history_s")
    shown = "all" if history is None else f"{history / 86400:g} d"
    return (f"{report['origins']} origins x {len(report['models'])} models, history {shown}, "
            f"auto: fit median {auto['fit_seconds_median']:.3f} s, MASE {auto['mase']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=215, help="trace length (default 215)")
    parser.add_argument("--step", type=int, default=1800, help="trace step in seconds (1800)")
    parser.add_argument("--only", choices=COMMANDS, help="run just this command")
    parser.add_argument("--keep", metavar="DIR", help="write the trace and reports here and keep them")
    parser.add_argument("--forecast-eval-args", default="", help="extra flags, e.g. '--history 1000d'")
    parser.add_argument("--backtest-args", default="", help="extra flags for the backtest")
    args = parser.parse_args(argv)

    from forecasting.traces import synthetic_trace, write_trace

    with tempfile.TemporaryDirectory(prefix="prewarm-long-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        trace = folder / f"synthetic_{args.days}d_{args.step}s.csv"
        write_trace(trace, synthetic_trace(days=args.days, step_seconds=args.step, seed=0))
        print(f"trace: {args.days} days at {args.step} s ({args.days * 86400 // args.step} rows)\n")
        print("| command | wall s | CPU s | peak RSS MB | reported |")
        print("|---|---|---|---|---|")
        for command in COMMANDS if args.only is None else (args.only,):
            out = folder / f"{command}.json"
            extra = (args.backtest_args if command == "backtest" else args.forecast_eval_args).split()
            line = [command, "--trace", str(trace), "--no-progress", *extra]
            wall, cpu, rss = timed([*prewarm(), *line, "--json", str(out)])
            report = json.loads(out.read_text())
            shown = " ".join(line).replace(str(trace), trace.name)
            print(f"| `prewarm {shown}` | {wall:.0f} | {cpu:.0f} | {rss} | "
                  f"{details(command, report)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
