"""``prewarm forecast-eval``: argparse wiring, table, JSON and plot around :mod:`.evaluate`.

The ``prewarm`` console script calls :func:`add_arguments` and :func:`run`; ``python -m
forecasting.eval_cli`` is a stand-alone fallback. Bad input exits with status 2 and a message
naming the flag or file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from forecasting import durations
from forecasting.evaluate import AUTO, EvalSpec, ModelRun, actuals, evaluate, origins
from forecasting.traces import TraceError, read_trace

ERROR = "prewarm forecast-eval: error:"
"""The prefix every `prewarm` command's errors share (forecasting never imports scaler's)."""


DEFAULT_EVAL_DAYS = 90
"""Longest span scored by default: 360 refits of each model at 6 h, about a minute on 2 cores at
30-minute steps and two and a half at 1-minute steps, whose fits cost twice as much (at 120 days
they took 181 s; docs/FORECASTING.md, "Long traces"). A 360-day trace scores 90 days: up to
that, the last 25 % as EVALUATION.md says."""
DEFAULT_MAX_ORIGINS = 20_000
"""Most origins scored by default: 90 days at 30-minute steps are 4,320 (every step scored); at
1-minute steps 129,600, scored every 7th step."""


class UsageError(ValueError):
    """Bad command-line input; the message names the flag."""


def parse_duration(text: str, *, flag: str) -> int:
    """Whole seconds: ``"30m"`` -> 1800, ``"1h30m"`` -> 5400 (:mod:`forecasting.durations`)."""
    try:
        return round(durations.parse_duration(text))
    except durations.DurationError as exc:
        raise UsageError(f"{flag} {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``forecast-eval`` (docs/FORECASTING.md)."""
    durations.accept_negative_durations(parser)
    parser.add_argument("--trace", required=True, help="trace CSV (gzip ok)")
    parser.add_argument("--horizon", default="30m", help="lead time scored (default 30m)")
    parser.add_argument("--season", default="1d", help="seasonal-naive season for MASE (1d)")
    parser.add_argument("--refit-every", default="6h",
                        help="refit interval; update() in between (default 6h)")
    parser.add_argument("--history", default="21d",
                        help="history each fit sees, as the scaler's defaults.history (default 21d)")
    parser.add_argument("--eval-span", default=f"{DEFAULT_EVAL_DAYS}d",
                        help="score the last 25%% of the trace, at most this long (default "
                             f"{DEFAULT_EVAL_DAYS}d: a longer trace costs no more; 'all' for no cap)")
    parser.add_argument("--max-origins", type=int, default=DEFAULT_MAX_ORIGINS,
                        help="score every k-th step when the span has more origins than this "
                             f"(default {DEFAULT_MAX_ORIGINS}; 0: every step)")
    parser.add_argument("--quantiles", default="0.1,0.5,0.9,0.95", help="quantile levels")
    parser.add_argument("--json", metavar="OUT", help="write the JSON report here")
    parser.add_argument("--plot", metavar="PNG", help="plot actual vs forecast with the band")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_spec(args: argparse.Namespace, step_seconds: int) -> EvalSpec:
    """Validated :class:`EvalSpec` from the flags, in steps of the trace."""
    values = {}
    for flag in ("horizon", "season", "refit_every"):
        seconds = parse_duration(getattr(args, flag), flag="--" + flag.replace("_", "-"))
        if seconds < step_seconds or seconds % step_seconds:
            raise UsageError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be a "
                             f"positive multiple of the trace step ({step_seconds} s)")
        values[flag] = seconds
    history = parse_duration(args.history, flag="--history")
    if history < step_seconds:
        raise UsageError(f"--history {args.history}: must be at least the trace step "
                         f"({step_seconds} s)")
    span = None if args.eval_span == "all" else parse_duration(args.eval_span, flag="--eval-span")
    if span is not None and span < values["horizon"]:  # at least one origin keeps its horizon step
        raise UsageError(f"--eval-span {args.eval_span}: must be at least --horizon "
                         f"({args.horizon}), or 'all'")
    if args.max_origins < 0:
        raise UsageError(f"--max-origins {args.max_origins}: must be >= 1, or 0 for every step")
    try:
        quantiles = tuple(float(q) for q in args.quantiles.split(","))
        return EvalSpec(horizon_steps=values["horizon"] // step_seconds,
                        season_seconds=values["season"],
                        refit_every_steps=values["refit_every"] // step_seconds,
                        quantiles=quantiles, history_steps=history // step_seconds,
                        max_eval_steps=None if span is None else span // step_seconds,
                        max_origins=args.max_origins or None)
    except ValueError as exc:
        raise UsageError(f"--quantiles {args.quantiles!r}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Run the evaluation: table on stdout, progress on stderr, optional JSON and plot."""
    if args.plot:
        from forecasting.extras import need_plot

        need_plot("forecast-eval")
    try:
        trace = read_trace(args.trace)
        spec = build_spec(args, trace.step_seconds)
        report, runs = _evaluate(args, trace.series, spec)
    except (UsageError, TraceError) as exc:
        print(f"{ERROR} {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{ERROR} --trace {args.trace}: {exc}", file=sys.stderr)
        return 2
    print_table(report, sys.stdout)
    try:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        if args.plot:
            plot(trace.series, spec, runs, report, Path(args.plot))
    except OSError as exc:
        flag, name = ("--json", args.json) if exc.filename == args.json else ("--plot", args.plot)
        print(f"{ERROR} {flag} {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _evaluate(args: argparse.Namespace, series: Any, spec: EvalSpec) -> tuple[
        dict[str, Any], dict[str, ModelRun]]:
    from forecasting.evaluate import model_specs
    from forecasting.extras import progress as tqdm  # no bar without the plot extra

    total = (len(model_specs(series, spec)) + 1) * len(origins(len(series), spec))
    with tqdm(total=total, desc="forecast-eval", unit="origin", file=sys.stderr,
              disable=bool(args.no_progress)) as bar:
        return evaluate(series, spec, trace=str(args.trace), progress=bar.update)


def print_table(report: dict[str, Any], out: TextIO) -> None:
    """The readable table: one row per model, the selected one marked."""
    models = report["models"]
    levels = list(next(iter(models.values()))["coverage"])
    head = f"{'model':<26} {'MASE':>6} {'sMAPE%':>7} " + " ".join(
        f"{'pin' + q:>10} {'cov' + q:>8}" for q in levels) + f" {'fit_s':>7}"
    history = ("all history" if report["history_s"] is None
               else f"the last {report['history_s'] / 86400:g} d")
    scored = f"the last {report['eval_span_s'] / 86400:.3g} d"
    if report["origin_every_s"] != report["step_s"]:  # --max-origins thinned them
        scored += f", every {report['origin_every_s']} s"
    print(f"trace {report['trace']}: horizon {report['horizon_s']} s, {report['origins']} "
          f"origins ({scored}), refit every {report['refit_every_s']} s on {history}, "
          f"{report['excluded_points']} gap/missing points not scored", file=out)
    print(head, file=out)
    for name, m in models.items():
        mark = " *" if name == report["selected"] else ""
        cells = " ".join(f"{_fmt(m['pinball'][q], 10, 1)} {_fmt(m['coverage'][q], 8, 3)}"
                         for q in levels)
        print(f"{name + mark:<26} {_fmt(m['mase'], 6, 3)} {_fmt(m['smape'], 7, 1)} {cells} "
              f"{_fmt(m['fit_seconds_median'], 7, 3)}", file=out)
    print(f"selected (by fit_auto, most often): {report['selected']} "
          f"{report['selected_counts']}", file=out)


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def plot(series: Any, spec: EvalSpec, runs: dict[str, ModelRun], report: dict[str, Any],
         path: Path) -> None:
    """Actual vs the auto forecast at the horizon, with the outermost quantile band."""
    import numpy as np

    from forecasting.extras import pyplot

    plt = pyplot("forecast-eval")

    span = np.array(origins(len(series), spec)) + spec.horizon_steps - 1
    hours = (span * series.step_seconds) / 3600.0
    auto = runs[AUTO]
    lo, hi = min(auto.quantiles), max(auto.quantiles)
    fig, ax = plt.subplots(figsize=(12, 4))
    actual, _ = actuals(series, spec)  # collection gaps not drawn: they are not demand
    ax.plot(hours, actual, color="black", lw=0.8, label="actual (gaps blank)")
    ax.plot(hours, auto.mean, color="tab:blue", lw=0.8, label=f"auto ({report['selected']})")
    ax.fill_between(hours, auto.quantiles[lo], auto.quantiles[hi], color="tab:blue", alpha=0.25,
                    label=f"q{lo:g}-q{hi:g}")
    ax.set_xlabel("hours since trace start")
    ax.set_ylabel("requests per bucket")
    ax.set_title(f"{report['trace']}: forecast {report['horizon_s'] // 60} min ahead")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forecasting.eval_cli",
                                     description="Rolling-origin forecast evaluation")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
