"""``prewarm backtest``: flags, trace or Prometheus history, progress, table, JSON and plot.

The ``prewarm`` console script calls :func:`add_arguments` and :func:`run`; ``python -m
scaler.backtest.cli`` runs it stand-alone. Bad input exits with status 2 and a message naming
the flag or the file::

    prewarm backtest --trace traffic.csv --cold-start 30m \\
        --json out/m-small-30m.json --plot out/m-small-30m.png
    prewarm backtest --prometheus http://prometheus:9090 --model llama-3-8b --since 14d
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from forecasting.durations import DurationError, accept_negative_durations, parse_duration
from forecasting.eval_cli import DEFAULT_EVAL_DAYS
from forecasting.extras import need_plot
from forecasting.traces import TraceError, read_trace
from forecasting.types import Series
from scaler.backtest.auto import write_timeline, write_tuner_log
from scaler.backtest.plots import plot
from scaler.backtest.report import print_table, to_json
from scaler.backtest.scenario import Scenario, ScenarioError, last_span, scenario_from_series
from scaler.backtest.sim import ClusterSpec, ControlSpec
from scaler.backtest.sweep import (
    POLICIES,
    PREDICTIVE_HEADROOMS,
    PREDICTIVE_QUANTILES,
    Backtest,
    BacktestSpec,
    progress_steps,
    run_backtest,
)
from scaler.backtest.tape import HISTORY
from scaler.core.errors import ConfigError, SourceError


class UsageError(ValueError):
    """Bad command-line input; the message names the flag."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``prewarm backtest`` (docs/BACKTEST.md)."""
    accept_negative_durations(parser)
    src = parser.add_argument_group("traffic (one of)")
    src.add_argument("--trace", metavar="CSV", help="trace CSV: timestamp_utc,requests[,...] (gzip ok)")
    src.add_argument("--prometheus", metavar="URL", help="replay a model's history from Prometheus")
    src.add_argument("--model", metavar="NAME", help="with --prometheus: vLLM model_name to replay")
    src.add_argument("--since", default="14d", help="with --prometheus: history to read (default 14d)")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--cold-start", default="10m",
                         help="replica cold start, fixed (10m) or uniform range (8m:14m); default 10m")
    cluster.add_argument("--node-provision", default="0s",
                         help="GPU node provisioning added when no node is free (default 0)")
    cluster.add_argument("--peak-replicas", type=int, default=20,
                         help="replicas the trace's busiest minute needs; sets c (default 20)")
    cluster.add_argument("--capacity", type=float, metavar="REQ_PER_MIN",
                         help="requests one replica serves per minute (overrides --peak-replicas)")
    cluster.add_argument("--gpus-per-replica", type=int, default=1, help="GPUs per replica (default 1)")
    control = parser.add_argument_group("KEDA / HPA")
    control.add_argument("--polling-interval", default="30s", help="KEDA pollingInterval (default 30s)")
    control.add_argument("--hpa-tolerance", type=float, default=0.0, help="HPA tolerance (default 0)")
    control.add_argument("--scale-down-window", default="300s",
                         help="HPA scale-down stabilization window (default 300s)")
    control.add_argument("--min-replicas", type=int, default=1, help="minReplicaCount (default 1)")
    control.add_argument("--max-replicas", type=int, help="maxReplicaCount (default 2 x peak replicas)")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--policies", default=None,
                           help=f"comma-separated subset of {','.join(POLICIES)} (default all; with "
                                "--slo, the baselines only)")
    run_group.add_argument("--warmup", default="7d",
                           help="history used only to fit and settle, not scored (default 7d)")
    # The same default span as forecast-eval's: one answer to "how much of a long trace counts".
    run_group.add_argument("--eval-span", default=f"{DEFAULT_EVAL_DAYS}d",
                           help="score the last this-long of the trace after the warmup, replayed "
                                f"from {HISTORY // 1440} days before it (what a fit sees; default "
                                "%(default)s: a longer trace costs no more; 'all' replays and scores "
                                "every minute after the warmup)")
    run_group.add_argument("--refit-every", default=None,
                           help="predictive refit interval (default: 6h, or on a trace over 120 days the "
                                "shortest of 8h, 12h, 1d, 2d, ... that keeps to 480 fits)")
    run_group.add_argument("--stabilization", default="10m",
                           help="predictive scaleDown.stabilization, as in serve's config (default 10m)")
    run_group.add_argument("--quantiles", default=",".join(f"{q:g}" for q in PREDICTIVE_QUANTILES),
                           help="predictive sweep: forecast quantiles (default %(default)s)")
    run_group.add_argument("--headrooms", default=",".join(f"{h:g}" for h in PREDICTIVE_HEADROOMS),
                           help="predictive sweep: headrooms, capacityPerReplica = c / headroom "
                                "(default %(default)s)")
    run_group.add_argument("--slo", type=float, metavar="ON_TIME",
                           help="also run the self-tuned policy given only this on-time target "
                                "(e.g. 0.99), once, and compare it without hindsight; the predictive "
                                "quantile sweep is then skipped unless --policies names it")
    run_group.add_argument("--timeline", metavar="CSV",
                           help="with --slo: one row per simulated minute of the self-tuned policy")
    run_group.add_argument("--tuner-log", metavar="CSV",
                           help="with --slo: one row per hourly step of its tuner (the share fed, the "
                                "week's budget, the margin chosen and what its replay expects)")
    run_group.add_argument("--keep-gaps", action="store_true",
                           help="replay collection gaps as zero traffic (default: the policies see "
                                "no data there, and the world's traffic is filled from the past)")
    run_group.add_argument("--seed", type=int, default=0, help="seed of cold-start draws (a range only)")
    run_group.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                           help="worker processes for the forecast tape (the fits and their forecasts, "
                                "while the policies run), plus one for the baselines, which then "
                                "shares the predictive sweep's knobs once the tape is complete "
                                "(it holds a copy: more memory on long traces); 1 runs everything "
                                "in this process (default min(2, CPUs))")
    run_group.add_argument("--json", metavar="OUT", help="write the JSON report here")
    run_group.add_argument("--plot", metavar="PNG", help="write forecast/replicas/Pareto plots here")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")


def duration(text: str, flag: str) -> float:
    """Seconds from ``90s`` / ``10m`` / ``1h30m`` (the config's grammar; UsageError naming ``flag``)."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"{flag} {exc}") from None


def cold_start_range(text: str) -> tuple[float, float]:
    """``10m`` -> (600, 600); ``8m:14m`` -> (480, 840)."""
    parts = text.split(":")
    if len(parts) > 2:
        raise UsageError(f"--cold-start {text!r}: expected 10m or a range like 8m:14m")
    lo, hi = (duration(p, "--cold-start") for p in (parts[0], parts[-1]))
    if hi < lo:
        raise UsageError(f"--cold-start {text!r}: the range must go from low to high")
    if hi > 6 * 3600:
        raise UsageError(f"--cold-start {text!r}: must be at most 6h")
    return lo, hi


def policies(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown or not names:
        raise UsageError(f"--policies {text!r}: unknown {', '.join(unknown) or '(empty)'}; "
                         f"choose from {', '.join(POLICIES)}")
    return tuple(dict.fromkeys(names))


def numbers(text: str, flag: str, *, low: float, high: float) -> tuple[float, ...]:
    """``"0.5,0.9"`` -> (0.5, 0.9), each in [low, high]."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated numbers") from None
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise UsageError(f"{flag} {text!r}: each must be in [{low:g}, {high:g}]")
    return tuple(dict.fromkeys(values))


def predictive_knobs(args: argparse.Namespace) -> tuple[tuple[float, float], ...]:
    """(quantile, headroom) grid of the predictive sweep."""
    quantiles = numbers(args.quantiles, "--quantiles", low=0.5, high=0.99)
    headrooms = numbers(args.headrooms, "--headrooms", low=0.5, high=10.0)
    return tuple((q, h) for h in headrooms for q in quantiles)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def build_spec(args: argparse.Namespace) -> BacktestSpec:
    """Validated :class:`BacktestSpec` from the flags (UsageError names the first bad one)."""
    peak = args.peak_replicas
    _check(peak >= 1, f"--peak-replicas {peak}: must be >= 1")
    _check(args.capacity is None or args.capacity > 0, f"--capacity {args.capacity}: must be > 0")
    _check(args.gpus_per_replica >= 1, f"--gpus-per-replica {args.gpus_per_replica}: must be >= 1")
    _check(args.min_replicas >= 0, f"--min-replicas {args.min_replicas}: must be >= 0")
    max_replicas = args.max_replicas if args.max_replicas is not None else 2 * peak
    _check(max_replicas >= max(1, args.min_replicas),
           f"--max-replicas {max_replicas}: must be >= 1 and >= --min-replicas ({args.min_replicas})")
    _check(0 <= args.hpa_tolerance < 1, f"--hpa-tolerance {args.hpa_tolerance}: must be in [0, 1)")
    _check(args.jobs >= 1, f"--jobs {args.jobs}: must be >= 1")
    cpus = os.cpu_count() or 1
    # Each worker holds a fit's history and its Python; far more of them than cores only costs memory.
    _check(args.jobs <= 4 * cpus, f"--jobs {args.jobs}: at most {4 * cpus} (4 per CPU; this machine has {cpus})")
    polling = duration(args.polling_interval, "--polling-interval")
    _check(polling >= 1, f"--polling-interval {args.polling_interval}: must be >= 1s")
    refit = None if args.refit_every is None else duration(args.refit_every, "--refit-every")
    _check(refit is None or refit >= 60, f"--refit-every {args.refit_every}: must be >= 1m")
    cluster = ClusterSpec(cold_start_s=cold_start_range(args.cold_start),
                          node_provision_s=duration(args.node_provision, "--node-provision"),
                          gpus_per_replica=args.gpus_per_replica, seed=args.seed)
    control = ControlSpec(polling_s=polling, tolerance=args.hpa_tolerance,
                          scale_down_window_s=duration(args.scale_down_window, "--scale-down-window"),
                          min_replicas=args.min_replicas, max_replicas=max_replicas)
    stabilization = duration(args.stabilization, "--stabilization")
    _check(stabilization <= 86400, f"--stabilization {args.stabilization}: must be at most 1d")
    slo = args.slo
    _check(slo is None or (math.isfinite(slo) and 0.5 <= slo <= 0.9999),
           f"--slo {slo}: must be an on-time share in [0.5, 0.9999], e.g. 0.99")
    _check(args.timeline is None or slo is not None, "--timeline goes with --slo")
    _check(args.tuner_log is None or slo is not None, "--tuner-log goes with --slo")
    if args.policies is not None:
        names = policies(args.policies)
    else:  # with --slo the self-tuned run replaces the predictive sweep
        names = tuple(p for p in POLICIES if slo is None or p != "predictive")
    return BacktestSpec(cluster=cluster, control=control, policies=names,
                        peak_replicas=peak, refit_every_s=refit, stabilization_s=stabilization,
                        predictive_knobs=predictive_knobs(args), jobs=args.jobs, slo=slo)


def writable(path: str | None, flag: str) -> Path | None:
    """The output path, its folder created; UsageError naming ``flag`` when it cannot be written.

    Checked before the run, so a typo does not cost the whole backtest.
    """
    if path is None:
        return None
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot create {out.parent}: {exc.strerror or exc}") from None
    if out.is_dir() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UsageError(f"{flag} {path}: not a writable file path")
    return out


def load_series(args: argparse.Namespace) -> tuple[Series, str]:
    """Requests per bucket and the trace's name, from ``--trace`` or ``--prometheus``."""
    if (args.trace is None) == (args.prometheus is None):
        raise UsageError("give exactly one of --trace CSV or --prometheus URL")
    if args.trace is not None:
        _check(args.model is None, "--model goes with --prometheus, not --trace")
        trace = read_trace(args.trace)
        return trace.series, str(args.trace)
    _check(bool(args.model), "--prometheus needs --model NAME (the vLLM model_name to replay)")
    return prometheus_series(args.prometheus, args.model, duration(args.since, "--since"))


def prometheus_series(url: str, model_name: str, since_seconds: float) -> tuple[Series, str]:
    """A model's arrivals per minute over the last ``since_seconds``, from Prometheus.

    Read through the project's own adapter (the ``arrivals`` demand signal, requests per second,
    times 60), so the replay sees what ``serve`` would have seen.
    """
    from scaler.core.config import parse_settings
    from scaler.edges.prometheus.source import PrometheusSource

    _check(since_seconds >= 3600, f"--since {since_seconds:g}s: must be at least 1h")
    raw = {"prometheus": {"url": url},
           "models": [{"name": "backtest", "servedModelName": model_name, "capacityPerReplica": 1,
                       "demand": "arrivals"}]}
    try:
        settings = parse_settings(raw, source="flags").settings
    except ConfigError as exc:
        raise UsageError(f"--prometheus {url!r} / --model {model_name!r}: {exc}") from None
    assert settings.prometheus is not None
    end = math.floor(time.time() / 60) * 60
    source = PrometheusSource(settings.prometheus, settings.defaults)
    try:
        series = source.history(settings.models[0], start=end - since_seconds, end=end, step_seconds=60)
    except SourceError as exc:
        raise UsageError(f"--prometheus {url}: {exc}") from None
    finally:
        source.close()
    if not np.isfinite(series.values).any():
        raise UsageError(f"--model {model_name!r}: Prometheus at {url} has no vLLM arrivals for "
                         f"model_name={model_name!r} in the last {since_seconds / 86400:g} d")
    return Series(series.start, 60, series.values * 60.0), f"prometheus:{model_name}"


def eval_span_minutes(text: str) -> int | None:
    """``--eval-span``: whole minutes, or None for ``all``."""
    if text == "all":
        return None
    try:
        span = parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"--eval-span {exc}; or 'all' to score every minute") from None
    _check(span >= 3600, f"--eval-span {text}: must be at least 1h, or 'all'")
    return math.ceil(span / 60)


def load_scenario(args: argparse.Namespace, spec: BacktestSpec) -> Scenario:
    span = eval_span_minutes(args.eval_span)  # checked before the trace is read
    series, name = load_series(args)
    whole = scenario_from_series(series, name=name, warmup_seconds=duration(args.warmup, "--warmup"),
                                 peak_replicas=spec.peak_replicas, capacity=args.capacity,
                                 fill=not args.keep_gaps, warmup_text=args.warmup)
    return last_span(whole, span, HISTORY)


def execute(scenario: Scenario, spec: BacktestSpec, *, progress: bool) -> Backtest:
    """Run with a progress bar on stderr (fits, simulated sweep points, the self-tuned run's days)."""
    from forecasting.extras import progress as tqdm  # no bar without the plot extra

    total = progress_steps(scenario, spec)
    with tqdm(total=total, desc="backtest", unit="step", file=sys.stderr,
              disable=True if not progress else None) as bar:
        return run_backtest(scenario, spec, progress=bar.update if progress else None)


def run(args: argparse.Namespace) -> int:
    """``prewarm backtest``: table on stdout, progress on stderr, optional JSON and plot."""
    if args.plot:
        need_plot("backtest")
    try:
        spec = build_spec(args)
        json_out, plot_out = writable(args.json, "--json"), writable(args.plot, "--plot")
        timeline_out = writable(args.timeline, "--timeline")
        tuner_out = writable(args.tuner_log, "--tuner-log")
        scenario = load_scenario(args, spec)
    except (UsageError, ScenarioError, TraceError) as exc:
        print(f"prewarm backtest: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = execute(scenario, spec, progress=not args.no_progress)
    except BrokenProcessPool:
        print(f"prewarm backtest: error: a worker process died in the run (killed from outside, most "
              f"often by the OOM killer); rerun with fewer --jobs (this run had {args.jobs}) or with "
              f"more memory", file=sys.stderr)
        return 1
    print_table(result, sys.stdout)
    if json_out is not None:
        json_out.write_text(json.dumps(to_json(result), indent=2) + "\n")
    if plot_out is not None:
        plot(result, plot_out)
    if timeline_out is not None and result.auto is not None:
        write_timeline(result.auto, result.scenario, timeline_out)
    if tuner_out is not None and result.auto is not None:
        write_tuner_log(result.auto, tuner_out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaler.backtest.cli",
        description="Closed-loop backtest of predictive vs reactive scaling vs the oracle on a trace.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
