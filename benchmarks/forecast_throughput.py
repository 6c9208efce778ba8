"""Refit throughput of ``fit_auto``: many series in a process pool, as the scaler runs it.

Two workloads (ISSUE 3):

- ``servegen``: the 314 real per-client series of ../shared/data/servegen/*_per_client_10min.csv.gz
  (14 days at 10 minutes);
- ``minute``: N series at 1-minute resolution over 14 days, either synthetic (daily + weekly
  seasonal Poisson, varied level/seed) or the real per-client series spread over minutes
  (``--minute-source servegen``: each 10-minute count split into 10 Poisson minutes).

Reports fits/s, wall time, per-fit seconds, chosen models, skill and peak RSS (parent and the
largest worker; total = parent + workers x largest worker, an upper bound). Not a test: run it
by hand and record the figures in docs/FORECASTING.md.

    .venv/bin/python benchmarks/forecast_throughput.py --workload servegen
    .venv/bin/python benchmarks/forecast_throughput.py --workload minute --n 1000 --workers 2
"""

from __future__ import annotations

import os

# One BLAS thread per worker process: with OpenBLAS's default thread pool, 2 workers on 2 busy
# cores spin against each other and statsmodels fits run 2-5x slower (measured). The scaler's
# fit pool needs the same (see docs/FORECASTING.md).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forecasting import Series, fit_auto  # noqa: E402
from forecasting.traces import read_trace, synthetic_trace  # noqa: E402

SERVEGEN = REPO / ".." / "shared" / "data" / "servegen"
_CLIENTS: list[Series] = []


def load_clients() -> list[Series]:
    """Every per-client column of the three ServeGen per-client files (314 series)."""
    out: list[Series] = []
    for path in sorted(SERVEGEN.glob("*_per_client_10min.csv.gz")):
        out += list(read_trace(path).columns.values())
    return out


def _init_worker(need_clients: bool) -> None:
    global _CLIENTS
    if need_clients:
        _CLIENTS = load_clients()


def make_series(workload: str, index: int, days: int) -> Series:
    """The ``index``-th series of a workload, built inside the worker (no data shipped)."""
    if workload == "servegen":
        return _CLIENTS[index]
    if workload == "minute-servegen":
        coarse = _CLIENTS[index % len(_CLIENTS)]
        rng = np.random.default_rng(index)
        minutes = rng.poisson(np.repeat(coarse.values, 10) / 10.0).astype(np.float64)
        return Series(coarse.start, 60, minutes[: days * 1440])
    rng = np.random.default_rng(index)
    peak = float(rng.choice([0.5, 5, 50, 500]))
    return synthetic_trace(days=days, step_seconds=60, seed=index, peak_per_minute=peak).series


def fit_one(task: tuple[str, int, int, int]) -> dict[str, Any]:
    workload, index, days, horizon_s = task
    series = make_series(workload, index, days)
    started = time.perf_counter()
    fitted = fit_auto(series, horizon_steps=max(1, horizon_s // series.step_seconds))
    seconds = time.perf_counter() - started
    fitted.update(Series(fitted.end, series.step_seconds, series.values[-5:])).forecast(60)
    return {"name": fitted.name, "skill": fitted.skill, "seconds": seconds,
            "model_kb": len(pickle.dumps(fitted)) / 1024,
            "warnings": len(fitted.diagnostics.warnings),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from forecasting.extras import progress as tqdm  # no bar without the plot extra

    need_clients = args.workload == "servegen" or args.minute_source == "servegen"
    workload = args.workload if args.workload == "servegen" else (
        "minute-servegen" if args.minute_source == "servegen" else "minute")
    n = len(load_clients()) if args.workload == "servegen" else args.n
    tasks = [(workload, i, args.days, args.horizon_s) for i in range(n)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_init_worker,
                             initargs=(need_clients,)) as pool:
        results = list(tqdm(pool.map(fit_one, tasks, chunksize=4), total=n, file=sys.stderr,
                            desc=workload, unit="fit"))
    wall = time.perf_counter() - started
    return summarize(args, workload, results, wall)


def summarize(args: argparse.Namespace, workload: str, results: list[dict[str, Any]],
              wall: float) -> dict[str, Any]:
    seconds = [r["seconds"] for r in results]
    skills = [r["skill"] for r in results if r["skill"] is not None]
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = max(r["rss_mb"] for r in results)
    return {
        "workload": workload, "series": len(results), "workers": args.workers,
        "cpus": os.cpu_count(), "wall_s": round(wall, 2), "fits_per_s": round(len(results) / wall, 2),
        "fit_s_median": round(statistics.median(seconds), 4),
        "fit_s_p95": round(float(np.percentile(seconds, 95)), 4),
        "fit_s_max": round(max(seconds), 4),
        "fitted_model_kb_median": round(statistics.median(r["model_kb"] for r in results), 1),
        "peak_rss_mb": {"parent": round(parent), "largest_worker": round(child),
                        "total_upper_bound": round(parent + args.workers * child)},
        "selected": dict(Counter(r["name"] for r in results).most_common()),
        "skill_known": len(skills),
        "skill_below_1": sum(s < 1 for s in skills),
        "skill_median": round(statistics.median(skills), 3) if skills else None,
        "fits_with_warnings": sum(r["warnings"] > 0 for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["servegen", "minute"], default="minute")
    parser.add_argument("--minute-source", choices=["synthetic", "servegen"],
                        default="synthetic")
    parser.add_argument("--n", type=int, default=1000, help="series (minute workload)")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--horizon-s", type=int, default=1800)
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    needs_data = args.workload == "servegen" or args.minute_source == "servegen"
    if needs_data and not SERVEGEN.is_dir():
        print(f"error: {SERVEGEN} not found", file=sys.stderr)
        return 2
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
