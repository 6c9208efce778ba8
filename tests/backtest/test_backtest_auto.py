"""``prewarm backtest --slo``: the self-tuned policy without hindsight (EVALUATION.md, "Without hindsight")."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from forecasting.cleaning import runs
from scaler.backtest import cli
from scaler.backtest.auto import (
    TIMELINE_COLUMNS,
    TUNER_LOG_COLUMNS,
    TunedOnPast,
    beaten_by,
    picked_on_past,
    tuned_on_past,
    versus,
)
from scaler.backtest.misses import KINDS
from scaler.backtest.pareto import Point
from scaler.backtest.plots import TUNER_FLOOR, plot_tuner
from scaler.backtest.report import EPISODES_IN_JSON, beaten_in, to_json
from scaler.backtest.sim import RunResult
from scaler.backtest.sweep import Backtest, run_backtest
from tests.backtest.support import scenario
from tests.backtest.test_backtest_lookahead import CHANGES, KS, SPEC, build, changed, raw_trace

AUTO_SPEC = dataclasses.replace(SPEC, slo=0.99, policies=("reactive-util", "static"))


def test_versus_picks_the_cheapest_baseline_at_the_reached_attainment() -> None:
    frontiers = {
        "static": [Point(10, 0.98, 100.0), Point(12, 0.995, 120.0)],
        "reactive-util": [Point(0.8, 0.99, 90.0), Point(0.6, 0.999, 130.0)],
        "reactive-queue": [Point(5, 0.5, 300.0)],
    }
    ratios, best, ratio = versus(99.0, 0.99, frontiers)
    # static at 0.99: 100 + (0.01 / 0.015) * 20 = 113.33; reactive-util: 90.
    assert ratios["static"] == pytest.approx(99.0 / (100 + 20 * 0.01 / 0.015))
    assert ratios["reactive-util"] == pytest.approx(1.1)
    assert ratios["reactive-queue"] is None
    assert (best, ratio) == ("reactive-util", pytest.approx(1.1))
    assert versus(99.0, 0.9999, frontiers)[1:] == (None, None)


def test_beaten_by_names_the_baselines_as_much_on_time_for_less() -> None:
    rivals = {"static": (0.996, 90.0), "lean": (0.99, 50.0), "dear": (0.996, 120.0), "tie": (0.995, 100.0),
              "same-share": (0.995, 99.0)}
    assert beaten_by(100.0, 0.995, rivals) == ["static", "same-share"]
    assert beaten_by(100.0, 0.999, rivals) == []
    # read off the JSON block; a block without the figures names none
    block = {"slo_attainment": 0.995, "gpu_hours": 100.0, "baselines_tuned_on_past": {
        "static": {"slo_attainment": 0.996, "gpu_hours": 90.0}, "broken": {"slo_attainment": None}}}
    assert beaten_in(block) == ["static"]
    assert beaten_in({"slo_attainment": None}) == []


def test_tuned_on_past_picks_on_the_warmup_and_scores_on_the_window() -> None:
    # 3 days, warmup 2 days: knob A meets 0.99 on the warmup's second day, B is cheaper but misses.
    sc = scenario([100.0] * (3 * 1440), warmup=2 * 1440)
    late_a, late_b = np.zeros(3 * 1440), np.zeros(3 * 1440)
    late_b[1440:2880] = 5.0  # 5 % late on the tuning day
    late_a[2880:] = 2.0      # 2 % late in the scored window
    runs = [RunResult(np.zeros(4320, dtype=np.int64), np.zeros(4320, dtype=np.int64),
                      np.full(4320, billed, dtype=np.int64), late, np.zeros(4320))
            for billed, late in ((3, late_a), (2, late_b))]
    points = [Point(1.0, 0.98, 72.0, "A"), Point(2.0, 1.0, 48.0, "B")]
    picked = tuned_on_past(points, runs, sc, slo=0.99, gpus_per_replica=1)
    assert picked is not None and picked.label == "A" and picked.reached
    assert (picked.slo_attainment, picked.gpu_hours) == (0.98, 72.0)
    # what it was picked on: the warmup after its first day (1 day at 3 replicas, none late)
    assert (picked.warmup_attainment, picked.warmup_gpu_hours) == (1.0, 72.0)


def test_a_user_picks_the_baseline_that_met_the_target_on_the_warmup_for_least() -> None:
    def tuned(reached: bool, warmup: float, warmup_gpu: float) -> TunedOnPast:
        return TunedOnPast(1.0, "k", reached, 0.99, 100.0, warmup, warmup_gpu)

    assert picked_on_past({"static": tuned(True, 0.999, 300.0), "reactive-util": tuned(True, 0.991, 250.0),
                           "reactive-queue": tuned(False, 0.9, 100.0)}, 0.99) == "reactive-util"
    # none met it: the closest, the cheaper among equals
    assert picked_on_past({"static": tuned(False, 0.985, 300.0), "reactive-util": tuned(False, 0.97, 50.0)}, 0.99) == "static"
    assert picked_on_past({"a": tuned(False, 0.98, 300.0), "b": tuned(False, 0.98, 200.0)}, 0.99) == "b"
    assert picked_on_past({}, 0.99) is None


@pytest.fixture(scope="module")
def auto_run() -> Backtest:
    return run_backtest(build(raw_trace(KS["mid-interval"])), AUTO_SPEC)


@pytest.mark.slow
def test_auto_block_follows_the_contract(auto_run: Backtest) -> None:
    block = json.loads(json.dumps(to_json(auto_run)))["auto"]
    assert block["slo"] == 0.99
    assert 0 < block["slo_attainment"] <= 1 and block["gpu_hours"] > 0
    assert block["vs_oracle"] == pytest.approx(block["gpu_hours"] / auto_run.oracle_gpu_hours)
    assert set(block["vs_baselines"]) == {"reactive-util", "static"}
    reached = [r for r in block["vs_baselines"].values() if r is not None]
    assert block["best_baseline_ratio"] == (max(reached) if reached else None)
    for name, tuned in block["baselines_tuned_on_past"].items():
        assert name in {"reactive-util", "static"}
        assert {"knob", "slo_attainment", "gpu_hours", "warmup_slo_attainment", "warmup_gpu_hours"} <= set(tuned)
    assert block["picked_on_past"] in block["baselines_tuned_on_past"]
    # the tuner's choice is reported, and it was tuned (a day of history exists)
    assert block["last_margin"]["expected"] is not None
    # where the late requests came from: every kind, and the episodes as the run had them
    assert auto_run.auto is not None
    episodes = auto_run.auto.episodes
    late = float(auto_run.auto.run.late[auto_run.scenario.window].sum())
    assert late > 0, "the case should leave some requests late"
    assert sum(e.late for e in episodes) == pytest.approx(late)
    assert list(block["late_by_kind"]) == list(KINDS)
    assert sum(block["late_by_kind"].values()) == pytest.approx(1.0)
    listed = block["late_episodes"]
    assert 0 < len(listed) <= EPISODES_IN_JSON
    assert [e["late"] for e in listed] == sorted((e["late"] for e in listed), reverse=True)
    first = listed[0]
    assert set(first) == {"start_utc", "minutes", "late", "share", "peak_replicas", "vs_history",
                          "vs_time_of_day", "kind"}
    assert first["kind"] in KINDS and first["start_utc"].endswith("Z")


@pytest.mark.slow
@pytest.mark.parametrize("how", list(CHANGES))
def test_the_future_cannot_change_the_tuners_past(auto_run: Backtest, how: str) -> None:
    """Perturb the raw trace from minute k: every margin and answer up to k stays the same."""
    k = KS["mid-interval"]
    other = run_backtest(build(changed(raw_trace(k), k, CHANGES[how])), AUTO_SPEC)
    assert auto_run.auto is not None and other.auto is not None
    mine, theirs = auto_run.auto.controller, other.auto.controller
    np.testing.assert_array_equal(mine.margin[: k + 1], theirs.margin[: k + 1])
    np.testing.assert_array_equal(mine.desired[: k + 1], theirs.desired[: k + 1])
    np.testing.assert_array_equal(auto_run.auto.run.billed[: k + 1], other.auto.run.billed[: k + 1])
    # ...and the future did change what came after
    assert not np.array_equal(mine.desired[k + 1:], theirs.desired[k + 1:], equal_nan=True)


@pytest.mark.slow
def test_the_plot_draws_the_tuner_hour_by_hour(auto_run: Backtest) -> None:
    """The --slo picture's tuner panel: one mark per hourly step of the window that was fed a
    share (late ones as dots, clean ones on the floor), the aim held, the target, and a shaded
    span per stretch of spent budget."""
    from forecasting.extras import pyplot

    plt = pyplot("backtest")
    fig, ax = plt.subplots()
    try:
        plot_tuner(auto_run, ax)
        sc, auto = auto_run.scenario, auto_run.auto
        assert auto is not None
        steps = [s for s in auto.controller.steps if s.at >= sc.start + sc.warmup_minutes * 60.0]
        lines = {line.get_label(): line for line in ax.lines}
        dots = lines["late share measured (hourly, as fed)"].get_xdata()
        floor = lines[f"no late request (drawn at {TUNER_FLOOR:g})"].get_xdata()
        assert len(dots) + len(floor) == sum(s.on_time is not None for s in steps)
        assert len(dots) == sum(s.on_time is not None and s.on_time < 1.0 - TUNER_FLOOR for s in steps)
        assert lines["1 - target 0.99"].get_ydata()[0] == pytest.approx(0.01)
        spent = [s.budget == "spent" for s in steps]
        assert len(ax.patches) == len(runs(np.array(spent)))  # axvspan: one patch per stretch
    finally:
        plt.close(fig)


@pytest.mark.slow
def test_the_tuner_panel_leaves_an_hour_without_decisions_as_a_gap(auto_run: Backtest) -> None:
    """The margin's hourly mean, right axis; an hour with no decision (no data) is NaN there,
    quietly: nanmean warned "Mean of empty slice" on stderr (seen on m-mid at 30m)."""
    import warnings

    from forecasting.extras import pyplot

    auto = auto_run.auto
    assert auto is not None
    controller = copy.copy(auto.controller)
    controller.margin = auto.controller.margin.copy()
    first = auto_run.scenario.warmup_minutes
    controller.margin[first + 60:first + 120] = np.nan  # the window's second hour
    run = dataclasses.replace(auto_run, auto=dataclasses.replace(auto, controller=controller))
    plt = pyplot("backtest")
    fig, ax = plt.subplots()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plot_tuner(run, ax)
        hourly = fig.axes[1].lines[0].get_ydata()
        assert np.isnan(hourly[1]) and not np.isnan(hourly[0]) and not np.isnan(hourly[2])
        assert hourly[0] == pytest.approx(np.nanmean(controller.margin[first:first + 60]))
    finally:
        plt.close(fig)


def test_runs_are_the_stretches_of_true() -> None:
    """The spans the tuner panel shades (``forecasting.cleaning.runs``, which gap filling uses too)."""
    assert runs(np.array([False, True, True, False, True])) == [(1, 3), (4, 5)]
    assert runs(np.array([False, False])) == []


@pytest.mark.slow
def test_cli_slo_table_json_and_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    series = raw_trace(KS["mid-interval"])
    trace = tmp_path / "t.csv"
    with trace.open("w") as fh:
        fh.write("timestamp_utc,requests\n")
        for i, v in enumerate(series.values):
            stamp = f"2026-01-{1 + i // 1440:02d}T{(i % 1440) // 60:02d}:{i % 60:02d}:00Z"
            fh.write(f"{stamp},{'' if not math.isfinite(v) else int(v)}\n")
    out, timeline, tuner = tmp_path / "b.json", tmp_path / "tl.csv", tmp_path / "tuner.csv"
    rc = cli.main(["--trace", str(trace), "--warmup", "2d", "--slo", "0.99", "--peak-replicas", "10",
                   "--json", str(out), "--timeline", str(timeline), "--tuner-log", str(tuner),
                   "--plot", str(tmp_path / "b.png"), "--no-progress", "--jobs", "1"])
    assert rc == 0
    assert (tmp_path / "b.png").stat().st_size > 10_000  # four panels: the tuner's among them
    printed = capsys.readouterr().out
    assert "self-tuned (--slo 0.99, one run, no hindsight)" in printed
    # and whether a baseline tuned on the warmup did as well for less, as the JSON's figures say
    beaten = beaten_in(json.loads(out.read_text())["auto"])
    assert (("beaten on both attainment and cost by " + ", ".join(f"{n} tuned on the warmup" for n in beaten))
            if beaten else "no baseline tuned on the warmup reached its attainment for fewer GPU-hours") in printed
    report = json.loads(out.read_text())
    # and the baseline a user without prewarm would have deployed, judging on the warmup
    picked = report["auto"]["picked_on_past"]
    label = report["auto"]["baselines_tuned_on_past"][picked]["label"]
    assert f"a user judging on the warmup alone would deploy {picked} {label} (" in printed
    assert "predictive" not in report["policies"]  # no quantile sweep unless asked for
    assert set(report["auto"]["vs_baselines"]) == {"reactive-util", "reactive-queue", "static"}
    # the table names the largest episode of late requests, as the JSON does
    largest = report["auto"]["late_episodes"][0]
    assert "late requests (" in printed and largest["start_utc"][:16].replace("T", " ") + " UTC" in printed
    with timeline.open() as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == TIMELINE_COLUMNS
    assert len(rows) - 1 == report["trace_minutes"]
    body = rows[1:]
    # observed_demand is empty exactly where the policy saw nothing (the missing rows)
    blank = [r[2] == "" for r in body]
    assert any(blank) and not all(blank)
    assert all(float(r[1]) >= 0 and int(r[4]) >= 0 and int(r[5]) >= int(r[4]) for r in body)
    assert any(r[7] != "" for r in body)
    # The tuner log: one row per hour of the replay, each the margin held after that hour's step.
    with tuner.open() as fh:
        steps = list(csv.DictReader(fh))
    assert tuple(steps[0]) == TUNER_LOG_COLUMNS
    assert len(steps) == -(-report["trace_minutes"] // 60)
    assert {s["budget"] for s in steps} <= {"calm", "spent", "one-off"}
    assert steps[0]["replayed_on_time"] == ""  # before a day of history: the starting margin, untuned
    chosen = [s for s in steps if s["chosen"] == "1"]
    assert chosen and all(float(s["aim"]) >= 0.99 and s["replayed_on_time"] != "" for s in chosen)
    last = report["auto"]["last_margin"]
    assert float(steps[-1]["factor"]) == pytest.approx(last["factor"], rel=1e-5)
    assert float(steps[-1]["aim"]) == pytest.approx(last["aim"], rel=1e-5)
    assert steps[-1]["margin"].startswith(f"{float(steps[-1]['factor']):g} x ")


@pytest.mark.parametrize(("argv", "needle"), [
    (["--slo", "1.5"], "--slo 1.5: must be an on-time share"),
    (["--slo", "nan"], "--slo nan"),
    (["--timeline", "x.csv"], "--timeline goes with --slo"),
    (["--tuner-log", "x.csv"], "--tuner-log goes with --slo"),
])
def test_cli_slo_flags_are_checked(argv: list[str], needle: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_utc,requests\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,2\n")
    assert cli.main(["--trace", str(trace), *argv]) == 2
    assert needle in capsys.readouterr().err
