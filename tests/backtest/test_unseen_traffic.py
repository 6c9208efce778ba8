"""benchmarks/unseen_traffic.py: the synthetic traces unlike ServeGen are what they claim to be.

Each kind: 14 days at 1-minute steps, integer counts, reproducible from its seed, with the property
its name promises (idle stretches, a clean daily cycle, no seasonality, ...), written as a trace
CSV that ``forecasting.traces.read_trace`` (the reader of ``prewarm backtest``) accepts. The six
held-out event kinds (``EVENTS``: a daylight-saving change, a holiday, a launch, low volume, a
flash crowd, a retirement) likewise, and they stay out of the default ``--kinds``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from forecasting.traces import read_trace
from tests.backtest.support import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
ut = load_benchmark("unseen_traffic")
DAY = 1440
SELF_CONTAINED = [k for k in ut.KINDS if k != "azure-tiled"]  # azure-tiled reads ../shared/data
EVENT_KINDS = list(ut.EVENTS)


def _runs_of_zeros(x: np.ndarray) -> np.ndarray:
    edges = np.diff(np.r_[0, (x == 0).astype(int), 0])
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def _daily_peak(x: np.ndarray) -> float:
    """How far the autocorrelation at 24 h stands above its neighbours at 18 h and 30 h."""
    return ut.autocorr(x, DAY) - (ut.autocorr(x, 18 * 60) + ut.autocorr(x, 30 * 60)) / 2


@pytest.fixture(scope="module")
def azure_dir(shared_data: Path) -> Path:
    return shared_data / "azure_llm_2023"


@pytest.fixture(scope="module")
def traces(azure_dir: Path) -> dict[str, np.ndarray]:
    out = {k: ut.generate(k) for k in SELF_CONTAINED}
    out["azure-tiled"] = ut.generate("azure-tiled", azure_dir=azure_dir)
    return out


@pytest.mark.parametrize("kind", SELF_CONTAINED + EVENT_KINDS)
def test_length_counts_and_seed(kind: str) -> None:
    x = ut.generate(kind)
    assert x.shape == (14 * DAY,)
    assert x.dtype.kind == "i" and x.min() >= 0 and x.sum() > 0
    assert np.array_equal(x, ut.generate(kind)), "the default seed must give the same trace"
    fresh = ut.generate(kind, seed=7)
    assert np.array_equal(fresh, ut.generate(kind, seed=7))
    assert not np.array_equal(fresh, x), "--seed must draw a different trace"


def test_kinds_do_not_share_a_seed() -> None:
    seeds = [seed for seed, _ in ut.KINDS.values()]
    assert len(set(seeds)) == len(seeds)
    with pytest.raises(ValueError, match="unknown kind"):
        ut.generate("nope")


@pytest.mark.parametrize("kind", SELF_CONTAINED + EVENT_KINDS)
def test_csv_is_a_trace_the_backtest_reads(kind: str, tmp_path: Path) -> None:
    x = ut.generate(kind)
    path = tmp_path / f"{kind}.csv"
    ut.write_trace(path, x)
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp_utc,requests"
    assert lines[1] == f"2026-01-05T00:00:00Z,{x[0]}"
    assert lines[-1] == f"2026-01-18T23:59:00Z,{x[-1]}"
    assert len(lines) == 14 * DAY + 1
    trace = read_trace(path)
    series = trace.columns["requests"]
    assert series.step_seconds == 60 and trace.missing_rows == 0
    assert series.start == 1_767_571_200.0  # 2026-01-05T00:00:00Z
    assert np.array_equal(series.values, x.astype(float))


def test_bursty_idle_has_hours_of_zeros_and_heavy_bursts() -> None:
    for seed in (None, 1, 2):
        x = ut.generate("bursty-idle", seed)
        assert (x == 0).mean() > 0.2
        assert _runs_of_zeros(x).max() >= 8 * 60, "idle stretches of hours (nights, weekends)"
        busy = x[x > 0]
        assert 2 <= np.median(busy) <= 50, "a low base: a few to tens of requests/min"
        assert x.max() >= 8 * np.median(busy), "heavy bursts well above the base"
        assert x.std() / x.mean() > 1.5, "bursty per minute, like the Azure code trace"
        assert _daily_peak(x) < 0.5, "only a weak daily cycle"


def test_smooth_is_strongly_daily_and_weekly_with_little_noise() -> None:
    x = ut.generate("smooth")
    assert ut.autocorr(x, DAY) > 0.8
    assert ut.autocorr(x, 7 * DAY) > 0.9
    assert 100 <= x.mean() <= 3000 and x.max() >= 1000, "hundreds to thousands of requests/min"
    days = x.reshape(14, DAY).mean(axis=1)
    weekend = np.arange(14) % 7 >= 5
    assert days[weekend].max() < 0.8 * days[~weekend].min(), "weekends lower"
    assert np.median(np.abs(np.diff(x)) / x[1:]) < 0.1, "low minute-to-minute noise"


def test_weekly_trend_grows_and_steps_up_on_day_10() -> None:
    x = ut.generate("weekly-trend")
    days = x.reshape(14, DAY).mean(axis=1)
    assert 1.3 < days[10] / days[9] < 1.7, "a 40 % step on day 10 (on top of +5 %/day)"
    assert days[7:].mean() / days[:7].mean() > 1.05 ** 7 * 1.2, "steady growth plus the step"
    assert _daily_peak(x) > 0.3, "still daily seasonal"


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_random_walk_has_no_daily_peak(seed: int | None) -> None:
    x = ut.generate("random-walk", seed)
    assert abs(_daily_peak(x)) < 0.1
    assert ut.autocorr(x, DAY // 2) >= ut.autocorr(x, DAY) - 0.02, "autocorrelation only decays"
    assert _daily_peak(ut.generate("smooth", seed)) > 0.5, "while a seasonal trace has a clear peak"


def test_spiky_daily_has_the_batch_job_every_day_and_random_spikes() -> None:
    x = ut.generate("spiky-daily").reshape(14, DAY).astype(float)
    batch = x[:, 9 * 60:9 * 60 + 20].mean(axis=1)
    before = x[:, 8 * 60 + 30:9 * 60].mean(axis=1)
    assert (batch / before > 2.3).all(), "the 09:00 batch job (3x) on every day"
    assert ut.autocorr(x.ravel(), DAY) > 0.4
    # unforeseeable spikes: minutes far above the same minute's median over the days
    typical = np.median(x, axis=0)
    spiky = (x > 1.8 * typical).any(axis=1)
    assert spiky.sum() >= 7


def test_step_down_halves_on_day_10_and_stays_daily() -> None:
    days = ut.generate("step-down").reshape(14, DAY).mean(axis=1)
    weekday = np.arange(14) % 7 < 5
    before, after = days[:10][weekday[:10]].mean(), days[10:][weekday[10:]].mean()
    assert 0.4 < after / before < 0.6, "half the load leaves on day 10"
    assert _daily_peak(ut.generate("step-down")) > 0.3


def test_batch_jobs_run_on_the_schedule_and_one_a_day_off_it() -> None:
    x = ut.generate("batch-jobs").reshape(14, DAY).astype(float)
    interactive = np.median(x)
    for at in (2 * 60, 10 * 60 + 30, 16 * 60):  # a job within +-10 minutes, for 30 minutes or more
        weekdays = x[np.arange(14) % 7 < 5, at + 10:at + 40]
        assert (weekdays.mean(axis=1) > 4 * interactive).all(), at
    assert (x[np.arange(14) % 7 >= 5, 2 * 60 + 10:2 * 60 + 40].mean(axis=1) < 3 * interactive).sum() >= 3, \
        "no scheduled jobs on weekends (unless the unscheduled one falls there)"
    busy = (x > 4 * interactive).sum(axis=1)
    assert (busy[np.arange(14) % 7 >= 5] >= 30).all(), "the unscheduled job runs on weekends too"


def test_regime_shift_is_calm_for_a_week_then_bursty() -> None:
    x = ut.generate("regime-shift").reshape(14, DAY).astype(float)
    typical = np.median(x[:7], axis=0)  # the calm week's minute of day
    bursty = (x > 1.4 * typical).sum(axis=1)
    assert bursty[:8].max() < 5 and (bursty[8:] > 30).all()


def test_azure_tiled_keeps_the_real_per_minute_burstiness(traces: dict[str, np.ndarray]) -> None:
    x = traces["azure-tiled"]
    assert x.shape == (14 * DAY,)
    assert x.std() / x.mean() > 0.8, "Azure code is CV ~1 per minute"
    assert 0.02 < (x == 0).mean() < 0.5, "the code trace's zero minutes survive"
    hours = x.reshape(-1, 60).mean(axis=1).reshape(14, 24)
    assert hours[:, 13:18].mean() > 1.5 * hours[:, 1:6].mean(), "a daily envelope"


def test_azure_tiled_reads_its_shapes_from_the_given_folder(tmp_path: Path) -> None:
    """The shapes come from the files at run time: flat files give a trace with no bursts."""
    for name in ("code_1min.csv", "conv_1min.csv"):
        rows = [f"2023-11-16T18:{m:02d}:00Z,100,0,0" for m in range(60)]
        (tmp_path / name).write_text("timestamp_utc,requests,prompt_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    x = ut.azure_tiled(np.random.default_rng(1), azure_dir=tmp_path)
    hourly = x.reshape(-1, 60)
    within = (hourly.std(axis=1) / hourly.mean(axis=1)).mean()
    assert within < 0.2, "flat shapes: only Poisson noise within an hour"
    with pytest.raises(SystemExit, match=r"code_1min\.csv"):
        ut.azure_tiled(np.random.default_rng(1), azure_dir=tmp_path / "missing")


# -------------------------------------------------------------------------------------------------
# the event kinds (held out)

def _days(kind: str, seed: int | None = None) -> np.ndarray:
    return ut.generate(kind, seed).reshape(14, DAY).astype(float)


def _best_lag(before: np.ndarray, after: np.ndarray) -> int:
    """The shift in minutes (within +-3 h) that best lines the daily profile ``before`` up with ``after``."""
    lags = np.arange(-180, 181)
    return int(lags[np.argmax([np.dot(np.roll(before, lag), after) for lag in lags])])


def test_event_kinds_are_held_out_of_the_default() -> None:
    assert not set(ut.EVENTS) & set(ut.KINDS)
    assert {k: seed for k, (seed, _) in ut.EVENTS.items()} == \
        {"dst": 1, "holiday": 2, "launch": 3, "low-volume": 4, "flash": 5, "sunset": 6}
    args, _ = ut._parse([])
    assert args.kinds == list(ut.KINDS) and len(args.kinds) == 9, "the default is exactly the 9 kinds"
    assert ut._parse(["--kinds", "events"])[0].kinds == EVENT_KINDS
    assert ut._parse(["--kinds", "smooth,flash,events"])[0].kinds == \
        ["smooth", "flash", "dst", "holiday", "launch", "low-volume", "sunset"]
    with pytest.raises(SystemExit):
        ut._parse(["--kinds", "flash,nope"])


def test_a_fresh_event_draw_uses_seed_plus_the_index_in_events() -> None:
    assert np.array_equal(ut.generate("holiday", seed=10), ut.holiday(np.random.default_rng(11)))
    assert np.array_equal(ut.generate("dst", seed=10), ut.dst(np.random.default_rng(10)))
    assert np.array_equal(ut.generate("flash"), ut.flash(np.random.default_rng(5)))


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_dst_moves_the_daily_peak_an_hour_later_from_day_9(seed: int | None) -> None:
    x = _days("dst", seed)
    assert 40 <= _best_lag(x[:9].mean(axis=0), x[9:].mean(axis=0)) <= 80, "13:00 UTC -> 14:00 UTC"
    assert abs(_best_lag(x[:4].mean(axis=0), x[4:9].mean(axis=0))) <= 25, "no shift before day 9"
    assert ut.autocorr(x.ravel(), DAY) > 0.6


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_holiday_is_day_11_at_15_percent(seed: int | None) -> None:
    days = _days("holiday", seed).sum(axis=1)
    assert 11 % 7 == 4, "day 11 is a Friday"
    assert days[11] < 0.2 * min(days[10], days[4]), "a holiday: well under the Thursday and the Friday before"
    assert days[11] < 0.4 * min(days[12], days[13]), "and well under the weekend after it"
    weekdays = days[[d for d in range(14) if d % 7 < 5 and d != 11]]
    assert weekdays.max() < 1.2 * weekdays.min(), "the other weekdays alike"


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_launch_is_nothing_for_4_days_then_ramps_up_and_grows(seed: int | None) -> None:
    x = _days("launch", seed)
    days = x.sum(axis=1)
    assert days[:4].sum() == 0, "zero requests before the launch"
    assert x[4, :60].sum() > 0, "requests from the first hour of day 4"
    assert x[4, :360].sum() < 0.6 * x[5, :360].sum(), "a 6-hour ramp on day 4"
    assert (np.diff(days[4:]) > 0).all(), "grows every day"
    assert 2.5 < days[13] / days[5] < 3.6, "about 15 %/day (1.15**8 = 3.06)"


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_low_volume_is_a_few_requests_a_minute(seed: int | None) -> None:
    x = ut.generate("low-volume", seed)
    peak = x.reshape(14, 24, 60).mean(axis=2).mean(axis=0).max()
    assert 2 < peak < 8, "about 4 requests/min at the daily peak"
    assert x.max() <= 30 and x.mean() < 5
    assert (x == 0).mean() > 0.1, "small integer counts: many minutes with none"
    assert _daily_peak(x) > 0.1, "still a daily cycle"


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_flash_crowd_is_4x_for_six_hours_on_day_10(seed: int | None) -> None:
    x = _days("flash", seed)
    crowd = slice(10 * 60, 16 * 60)
    assert 3.0 < x[10, crowd].sum() / x[9, crowd].sum() < 5.0, "4x from 10:00 to 16:00"
    assert x[10, 10 * 60:10 * 60 + 5].mean() < 0.6 * x[10, 10 * 60 + 20:10 * 60 + 80].mean(), "a 20-minute ramp"
    for rest in (slice(0, 10 * 60), slice(16 * 60, DAY)):
        assert 0.8 < x[10, rest].sum() / x[9, rest].sum() < 1.25, "a normal day outside the six hours"
    others = np.delete(x.sum(axis=1), 10)
    assert others.max() < 1.25 * others.min(), "no crowd on any other day"


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_sunset_halves_every_two_days_from_day_6(seed: int | None) -> None:
    days = _days("sunset", seed).sum(axis=1)
    assert days[13] < 0.1 * days[5], "the last day well under a tenth of day 5"
    assert np.abs(days[:6] / days[5] - 1).max() < 0.15, "steady until day 6"
    for d in range(6, 12):
        assert 0.4 < days[d + 2] / days[d] < 0.6, d


def test_help_lists_both_sets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        ut._parse(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for kind in [*ut.KINDS, *ut.EVENTS]:
        assert f"- ``{kind}``:" in text, kind
    assert "twenty-ninth session (2026-12-07)" in text and "--kinds events" in text
    assert text.count("examples:") == 1 and "Examples::" not in text, "the epilog slices the docstring cleanly"
    assert text.index("- ``regime-shift``") < text.index("event kinds:") < text.index("- ``dst``")


def test_main_writes_the_kinds_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ut.main(["--out", str(tmp_path), "--kinds", "smooth,random-walk", "--seed", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["smooth", "random-walk"]
    assert all(w in out[0] for w in ("mean", "p99", "max", "zero", "acf(1d)"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random-walk.csv", "smooth.csv"]
    assert np.array_equal(read_trace(tmp_path / "smooth.csv").columns["requests"].values,
                          ut.generate("smooth", 5).astype(float))


def test_arguments_after_double_dash_go_to_the_backtests() -> None:
    args, extra = ut._parse(["--run", "--out", "/tmp/x", "--prewarm", sys.executable, "--", "--slo", "0.99"])
    assert args.run and extra == ["--slo", "0.99"] and args.cold_starts == ["10m", "30m"]
    with pytest.raises(SystemExit):
        ut._parse(["--kinds", "smooth,nope"])


def _report(oracle: float, auto: dict[str, object] | None) -> dict[str, object]:
    rep: dict[str, object] = {
        "oracle": {"gpu_hours": oracle}, "filled_buckets": 0,
        "policies": {"predictive": {"cost_at_slo": {"0.99": 2 * oracle, "0.999": None}},
                     "reactive-queue": {"cost_at_slo": {"0.99": None, "0.999": None}}}}
    if auto is not None:
        rep["auto"] = auto
    return rep


def test_table_reads_the_json_with_and_without_the_auto_block(tmp_path: Path) -> None:
    (tmp_path / "smooth-10m.json").write_text(json.dumps(_report(100.0, None)))
    text = ut.report_table(["smooth"], tmp_path, ["10m", "30m"])
    assert "| smooth | 10m | 100.0 | 200.0 (2.00x) | - | 0 |" in text
    assert "no \"auto\" block" in text
    auto = {"slo": 0.99, "slo_attainment": 0.9912, "gpu_hours": 150.0, "vs_oracle": 1.5,
            "vs_baselines": {"reactive-util": 0.8, "reactive-queue": None}, "best_baseline_ratio": 0.8,
            "baselines_tuned_on_past": {"reactive-util": {"knob": 0.7, "slo_attainment": 0.98, "gpu_hours": 170.0}}}
    (tmp_path / "smooth-30m.json").write_text(json.dumps(_report(100.0, auto)))
    text = ut.report_table(["smooth"], tmp_path, ["10m", "30m"], {("smooth", "10m"): 12.0})
    assert "| smooth | 30m | 0.99 | 0.9912 | 150.0 | 1.50 | 0.80 | 0.80 | - | 0.9800 / 170.0 | - |" in text
    # where the late requests came from, when the JSON says
    auto["late_by_kind"] = {"beyond-history": 0.7, "beyond-time-of-day": 0.25, "within-history": 0.05}
    (tmp_path / "smooth-30m.json").write_text(json.dumps(_report(100.0, auto)))
    assert "| 0.9800 / 170.0 | 70 / 25 / 5 |" in ut.report_table(["smooth"], tmp_path, ["30m"])
    assert "| smooth | 10m | 100.0 | 200.0 (2.00x) | - | 0 | 12 |" in text
    assert ut.report_table(["smooth"], tmp_path / "none", ["10m"]).startswith("(no backtest JSON")


@pytest.mark.parametrize(("attainment", "ratio", "past", "cell", "counts"), [
    (0.99, 0.95, (0.98, 170.0), "| ok |", (1, 1, 1, 0)),
    (0.979, 0.95, (0.97, 170.0), "| under 98 % |", (0, 1, 0, 0)),
    (0.99, 1.2, (0.97, 170.0), "| over 1.1x |", (1, 0, 0, 0)),
    (0.99, 1.05, (0.995, 140.0), "| beaten by reactive-util |", (1, 1, 1, 1)),
    # as on time and no dearer: not beaten (it must be cheaper and at least as much on time)
    (0.99, 1.05, (0.99, 150.0), "| ok |", (1, 1, 1, 0)),
    (0.97, 1.3, (0.99, 100.0), "| under 98 %; over 1.1x; beaten by reactive-util |", (0, 0, 0, 1)),
    # no baseline reached its attainment at any cost: the cost check passes (EVALUATION.md)
    (0.995, None, (0.9, 100.0), "| ok |", (1, 1, 1, 0)),
])
def test_table_names_the_issues_checks_each_run_fails(tmp_path: Path, attainment: float, ratio: float | None,
                                                       past: tuple[float, float], cell: str,
                                                       counts: tuple[int, int, int, int]) -> None:
    """Each run's row says which check it fails (98 % on time, 1.1x the cheapest hindsight
    baseline) and which warmup-tuned baseline beat it on both counts; a line counts them."""
    auto = {"slo": 0.99, "slo_attainment": attainment, "gpu_hours": 150.0, "vs_oracle": 1.5,
            "vs_baselines": {"reactive-util": ratio}, "best_baseline_ratio": ratio,
            "baselines_tuned_on_past": {"reactive-util": {"knob": 0.7, "slo_attainment": past[0],
                                                          "gpu_hours": past[1]}}}
    (tmp_path / "smooth-30m.json").write_text(json.dumps(_report(100.0, auto)))
    text = ut.report_table(["smooth"], tmp_path, ["30m"])
    row = next(line for line in text.splitlines() if line.startswith("| smooth | 30m | 0.99 |"))
    assert row.endswith(cell + " - |")  # no baseline picked on the warmup in this JSON
    on_time, cost, both, beaten = counts
    assert (f"checks: at least 98 % on time on {on_time} of 1 runs, at most 1.1x the cheapest hindsight "
            f"baseline on {cost}, both on {both}; beaten on attainment and cost by a baseline tuned on "
            f"the warmup on {beaten}") in text


def test_table_sets_prewarm_beside_the_baseline_a_user_would_have_picked(tmp_path: Path) -> None:
    """The baseline that met the target on the warmup for the fewest GPU-hours is what a user
    without prewarm deploys: each row names it, and a line counts who held the target and who
    was cheaper where both did."""
    def auto(att: float, gpu: float, static: tuple[float, float]) -> dict[str, object]:
        return {"slo": 0.99, "slo_attainment": att, "gpu_hours": gpu, "best_baseline_ratio": 1.0,
                "picked_on_past": "static",
                "baselines_tuned_on_past": {"static": {"label": "12 replicas", "slo_attainment": static[0],
                                                       "gpu_hours": static[1]}}}
    runs = {"smooth": auto(0.995, 90.0, (0.994, 100.0)),       # both hold 0.99, prewarm cheaper
            "spiky-daily": auto(0.992, 120.0, (0.999, 100.0)),  # both hold it, the static count cheaper
            "bursty-idle": auto(0.985, 80.0, (0.97, 60.0))}     # prewarm 98 % only, static neither
    for kind, block in runs.items():
        (tmp_path / f"{kind}-30m.json").write_text(json.dumps(_report(100.0, block)))
    text = ut.report_table(list(runs), tmp_path, ["30m"])
    assert "| static 12 replicas: 0.9940 / 100.0 |" in text
    assert ("beside the baseline a user would have deployed on the warmup's evidence (the cheapest that met "
            "the target there, or the closest), over 3 runs: 99 % on time: prewarm 2, it 2; 98 %: prewarm 3, it 2; prewarm "
            "as much on time for fewer GPU-hours on 1, more on time for more on 1, less on time for fewer on "
            "0, beaten on both on 1; where both held 99 % (2), prewarm was cheaper on 1 (median GPU-hours "
            "prewarm / it 1.20x)") in text
    # a JSON from before the key, or naming a baseline it has no figures for: no pick, no line
    assert ut.picked({"picked_on_past": "static", "baselines_tuned_on_past": {}}) is None
    assert ut.picked({"picked_on_past": None}) is None


def _fake_prewarm(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that records its arguments and writes a minimal backtest JSON."""
    fake = tmp_path / "prewarm"
    calls = tmp_path / "calls.txt"
    fake.write_text(f"#!{sys.executable}\n"
                    "import json, sys\n"
                    f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                    "out = sys.argv[sys.argv.index('--json') + 1]\n"
                    "json.dump({'oracle': {'gpu_hours': 10.0}, 'policies': {'static': {'cost_at_slo': {'0.99': 15.0}}}},"
                    " open(out, 'w'))\n")
    fake.chmod(0o755)
    return fake, calls


def test_run_calls_the_backtest_per_trace_and_cold_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--run: one backtest per kind x cold start with the extra arguments, then the table."""
    fake, calls = _fake_prewarm(tmp_path)
    out = tmp_path / "traces"
    assert ut.main(["--run", "--out", str(out), "--kinds", "smooth", "--prewarm", str(fake), "--", "--slo", "0.99"]) == 0
    lines = calls.read_text().splitlines()
    assert len(lines) == 2
    for line, cold in zip(lines, ["10m", "30m"], strict=True):
        assert line.startswith(f"backtest --trace {out / 'smooth.csv'} --cold-start {cold} --no-progress --jobs 2 "
                               f"--json {out / f'smooth-{cold}.json'}")
        assert line.endswith("--slo 0.99")
    captured = capsys.readouterr()
    assert "[2/2] smooth 30m: ok" in captured.err
    assert "| smooth | 30m | 10.0 | 15.0 (1.50x) | - |" in captured.out


def test_run_in_parallel_gives_each_backtest_one_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--parallel 2: every kind x cold start still runs once, each with --jobs 1, and the table
    is the same; a count under 1 is refused by name."""
    fake, calls = _fake_prewarm(tmp_path)
    out = tmp_path / "traces"
    assert ut.main(["--run", "--parallel", "2", "--out", str(out), "--kinds", "smooth,step-down",
                    "--prewarm", str(fake)]) == 0
    lines = sorted(calls.read_text().splitlines())
    assert len(lines) == 4 and all(" --jobs 1 " in line for line in lines)
    assert {line.split()[2] + " " + line.split()[4] for line in lines} == {
        f"{out / f'{k}.csv'} {c}" for k in ("smooth", "step-down") for c in ("10m", "30m")}
    captured = capsys.readouterr()
    assert "[4/4]" in captured.err
    for kind in ("smooth", "step-down"):
        for cold in ("10m", "30m"):
            assert f"| {kind} | {cold} | 10.0 | 15.0 (1.50x) |" in captured.out
    with pytest.raises(SystemExit):
        ut._parse(["--run", "--parallel", "0", "--prewarm", str(fake)])
    assert "--parallel: 0 is not a count" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ut._parse(["--run", "--prewarm", str(tmp_path / "nope")])
    assert f"--prewarm: {tmp_path / 'nope'} is not a file" in capsys.readouterr().err


def test_run_and_report_take_the_event_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake, calls = _fake_prewarm(tmp_path)
    out = tmp_path / "traces"
    assert ut.main(["--run", "--out", str(out), "--kinds", "events", "--cold-starts", "10m", "--prewarm", str(fake)]) == 0
    assert [line.split()[2] for line in calls.read_text().splitlines()] == [str(out / f"{k}.csv") for k in EVENT_KINDS]
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(f"{k}.csv" for k in EVENT_KINDS)
    assert np.array_equal(read_trace(out / "flash.csv").columns["requests"].values, ut.generate("flash").astype(float))
    capsys.readouterr()
    assert ut.main(["--report", "--out", str(out), "--kinds", "events", "--cold-starts", "10m"]) == 0
    table = capsys.readouterr().out
    for kind in EVENT_KINDS:
        assert f"| {kind} | 10m | 10.0 | 15.0 (1.50x) |" in table
