"""The fit pool stops for good before the daemon's interpreter exits.

Found by CI: `prewarm serve` stopped by SIGTERM while fits were ending printed an
``Exception ignored in: <module 'threading'>`` traceback as its last stderr line (a JSON-log
consumer then sees a line that is not JSON). The pool had been left to the interpreter's exit
(``shutdown(wait=False)``), whose hook races the pool's manager thread on Python < 3.12.
``close()`` ends that thread itself, so nothing of the pool is left for the exit hook.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

import pytest

from scaler.fitpool import FitPool, stop_pool
from tests.support.process import alive

pytestmark = pytest.mark.slow


def _start_workers(pool: FitPool) -> None:
    """Submit a throwaway job and wait for its answer, so the workers are up and idle."""
    pool.submit(time.sleep, 0).result(timeout=60)


def test_close_kills_fits_in_flight_and_ends_the_manager_thread() -> None:
    pool = FitPool(2)
    _start_workers(pool)
    workers = list(pool._pool._processes.values())  # what close() must stop
    manager = pool._pool._executor_manager_thread
    long_fits = [pool.submit(time.sleep, 60) for _ in range(4)]  # two run, two wait
    time.sleep(0.5)
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 10  # did not wait for a 60 s fit
    assert manager is not None and not manager.is_alive()
    assert not any(worker.is_alive() for worker in workers)
    for fit in long_fits:  # each one ended: killed mid-fit, or cancelled while queued
        with pytest.raises((BrokenProcessPool, CancelledError)):
            fit.result(timeout=1)
    with pytest.raises(RuntimeError, match="the fit pool is closed"):
        pool.submit(time.sleep, 0)


def test_an_interpreter_that_closed_its_pool_exits_without_a_traceback() -> None:
    # Fits of about the time close() comes: the old race needed a fit to end right at exit.
    script = textwrap.dedent("""
        import time
        from scaler.fitpool import FitPool
        if __name__ == "__main__":
            pool = FitPool(2)
            pool.submit(time.sleep, 0).result()
            for i in range(6):
                pool.submit(time.sleep, 0.05 * i)
            time.sleep(0.15)
            pool.close()
    """)
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""


def test_ctrl_c_kills_a_worker_no_pool_lists_yet() -> None:
    """A Ctrl-C that lands while a pool is starting a worker: the process exists, no pool lists it
    (so closing the pool leaves it), and Python's exit joins it forever. About one interrupt in a
    hundred, half a second into ``prewarm backtest``, hung it so. Every command now kills each
    child it started before it returns 130."""
    script = textwrap.dedent("""
        import dataclasses, multiprocessing, sys, time
        from scaler import cli
        def interrupted(args):
            child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,))
            child.start()  # a worker a pool was starting when the Ctrl-C came
            print(child.pid, flush=True)
            raise KeyboardInterrupt
        if __name__ == "__main__":
            cli.COMMANDS = [dataclasses.replace(c, run=interrupted) for c in cli.COMMANDS]
            sys.exit(cli.main(["config-schema"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert not alive(int(done.stdout))


def test_workers_started_from_a_thread_that_ends_keep_working() -> None:
    """A worker dies with the daemon, not with the thread that happened to start it.

    The pool starts workers in whichever thread submits first. Linux's ``PR_SET_PDEATHSIG`` ties
    the death signal to that thread: when it ended, its workers were SIGKILLed, and the next fit
    found a broken pool (a restart counted, its fits lost) in a daemon that was fine."""
    pool = FitPool(1)
    try:
        starter = threading.Thread(target=_start_workers, args=(pool,))
        starter.start()
        starter.join()
        worker = next(iter(pool._pool._processes.values()))
        time.sleep(1.0)  # long enough for a death signal, and for a watchdog to act on one
        assert worker.is_alive()
        assert pool.submit(time.sleep, 0).result(timeout=60) is None
        assert pool.restarts_total == 0
    finally:
        pool.close()


def _die_halfway_through_sending_a_result() -> None:
    """Runs in a worker: write the first bytes of a result message, then die.

    What a worker killed while it sends a large result (a forecast segment, a sweep) leaves in
    the result pipe. The pool's manager thread reads the message's length, then waits for the
    rest; the pipe never reports its end, because the parent holds a write end of it too."""
    frame = sys._getframe(1)
    while "result_queue" not in frame.f_locals:  # the pool's worker loop, which called this one
        frame = frame.f_back
    writer = frame.f_locals["result_queue"]._writer
    os.write(writer.fileno(), struct.pack("!i", 1 << 20) + b"first bytes of a megabyte")
    os._exit(1)


def test_close_ends_a_pool_whose_worker_died_halfway_through_a_result() -> None:
    """Found by CI: Ctrl-C on a pooled backtest hung it for good ("the fit pool did not stop
    within 10 s", then the interpreter's exit waited for the pool's manager thread forever),
    when the kill caught a worker in the middle of sending its result."""
    pool = FitPool(1, stuck_after=1e9)  # close() alone, without the watch that would unstick it
    _start_workers(pool)
    manager = pool._pool._executor_manager_thread
    fit = pool.submit(_die_halfway_through_sending_a_result)
    deadline = time.monotonic() + 60
    while any(w.is_alive() for w in pool._pool._processes.values()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    assert manager is not None and manager.is_alive()  # stuck in the half-sent message
    pool.close(timeout=5)
    assert not manager.is_alive()
    with pytest.raises(BrokenProcessPool):
        fit.result(timeout=1)


def test_a_pool_whose_worker_died_halfway_through_a_result_heals_without_a_close() -> None:
    """In ``serve`` nobody closes the pool: an OOM kill in the middle of a result would leave the
    fit waiting forever, and every refit after it. The pool's watch breaks it; the fit fails as
    a dead worker's (the engine retries those) and the next one runs on a new pool."""
    pool = FitPool(1, stuck_after=1.0)
    try:
        _start_workers(pool)
        fit = pool.submit(_die_halfway_through_sending_a_result)
        with pytest.raises(BrokenProcessPool):
            fit.result(timeout=30)
        assert pool.submit(os.getpid).result(timeout=60) != os.getpid()
        assert pool.restarts_total == 1
    finally:
        pool.close()


def test_a_backtest_pool_whose_worker_died_halfway_through_a_result_fails_instead_of_hanging() -> None:
    """The backtest's pools are not replaced, only failed: its fits and sweeps wait on them."""
    from scaler.backtest.tape import new_worker_pool

    pool = new_worker_pool(1)
    try:
        with pytest.raises(BrokenProcessPool):
            pool.submit(_die_halfway_through_sending_a_result).result(timeout=60)
    finally:
        stop_pool(pool, timeout=5)
