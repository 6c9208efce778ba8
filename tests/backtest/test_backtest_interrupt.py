"""Ctrl-C on a backtest that runs worker processes (``--jobs 2``): the installed command exits
with 130 at once, prints no traceback, and leaves no worker behind. The signal goes to the
parent only (``kill -INT``), the harder case: a terminal's Ctrl-C signals the workers too. And a
backtest killed outright (SIGKILL, as the OOM killer does) takes its workers along as well."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from forecasting.traces import synthetic_trace, write_trace
from tests.cli.conftest import PREWARM
from tests.support.process import alive, children, ctrl_c_reaches_children

pytestmark = pytest.mark.slow


def test_sigint_stops_a_pooled_backtest_at_once_and_takes_its_workers_along(tmp_path: Path) -> None:
    proc, workers = _started_backtest(tmp_path)
    try:
        time.sleep(3.0)  # well into the fits and the baseline sweep
        assert proc.poll() is None, "the backtest ended before the interrupt: make the trace longer"
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # failed: leave no process behind for the next test
            _kill(proc, workers)
    stopped_after = time.monotonic() - signalled
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not (tmp_path / "r.json").exists()  # an interrupted run writes no report
    # The workers were killed, not waited for (before the fix: 8.5-9 s here, for the fits and
    # the baseline sweep in flight; after: 0.1 s). The kernel reaps them a moment later.
    _assert_gone(workers, "outlived the interrupted backtest")
    assert stopped_after < 5, f"the interrupt took {stopped_after:.1f} s to stop the backtest"


def _started_backtest(tmp_path: Path) -> tuple[subprocess.Popen[str], set[int]]:
    """A pooled ``--slo`` backtest, once its two tape workers and the baselines' one run."""
    trace = tmp_path / "synthetic.csv"
    write_trace(trace, synthetic_trace(days=60, step_seconds=300, seed=2))
    with ctrl_c_reaches_children():
        proc = subprocess.Popen([str(PREWARM), "backtest", "--trace", str(trace), "--slo", "0.99", "--jobs", "2",
                                 "--no-progress", "--json", str(tmp_path / "r.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # Spawned workers only: the resource tracker is a child too, and ends by itself.
    while len(workers := {pid for pid, cmd in children(proc.pid).items() if "spawn_main" in cmd}) < 3:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no worker processes started: {_kill(proc, workers)}")
        time.sleep(0.2)
    return proc, workers


def _assert_gone(workers: set[int], what: str, within: float = 5.0) -> None:
    """Every worker is gone within ``within`` s (the kernel reaps a killed one a moment later)."""
    deadline = time.monotonic() + within
    while left := {pid for pid in workers if alive(pid)}:
        assert time.monotonic() < deadline, f"workers {left} {what}"
        time.sleep(0.1)


def _kill(proc: subprocess.Popen[str], workers: set[int]) -> tuple[str, str]:
    """Kill the backtest and its workers; what it printed."""
    for pid in {proc.pid, *workers}:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return proc.communicate()


def test_a_killed_backtest_takes_its_workers_along(tmp_path: Path) -> None:
    proc, workers = _started_backtest(tmp_path)
    try:
        time.sleep(3.0)  # well into the fits and the baseline sweep
        assert proc.poll() is None, "the backtest ended before the kill: make the trace longer"
        proc.kill()  # no handler runs: only the kernel can stop the workers now
        # Before the fix the workers were still running two minutes later. (Orphans: init
        # reaps them, so /proc tells whether they are gone.)
        _assert_gone(workers, "outlived the killed backtest", within=10)
    finally:
        _kill(proc, workers)


def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """The imports take about a second: a Ctrl-C in them printed a KeyboardInterrupt traceback
    (found by interrupting backtests at random moments)."""
    trace = tmp_path / "synthetic.csv"
    # A trace the backtest accepts (longer than the 7-day warmup), so the run outlasts the
    # interrupt: with 2 days, warm imports let the command refuse the trace (exit 2) before it.
    write_trace(trace, synthetic_trace(days=10, step_seconds=300, seed=2))
    for delay in (0.15, 0.3):
        with ctrl_c_reaches_children():
            proc = subprocess.Popen([str(PREWARM), "backtest", "--trace", str(trace), "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err, err


@pytest.mark.parametrize("victim", [0, 1, 2])
def test_a_worker_killed_mid_run_ends_the_backtest_with_a_clear_error(tmp_path: Path, victim: int) -> None:
    """The OOM killer takes one worker (a forecast tape's or the baselines'; by start order): the
    backtest says so and how to avoid it (exit 1), with no traceback, no report, and no worker
    left behind. A dead baselines' worker used to go unnoticed until the self-tuned run ended."""
    proc, workers = _started_backtest(tmp_path)
    try:
        time.sleep(3.0)
        assert proc.poll() is None, "the backtest ended before the kill: make the trace longer"
        os.kill(sorted(workers)[victim], signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _kill(proc, workers)
    assert proc.returncode == 1, err
    assert "a worker process died in the run" in err and "--jobs" in err, err
    assert "Traceback" not in err, err
    assert not (tmp_path / "r.json").exists()
    _assert_gone(workers, "outlived the failed backtest")
