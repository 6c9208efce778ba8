"""The fit pool: worker processes for forecaster fits and SLO tuning, that heal and never outlive
the daemon.

A worker killed by the OOM killer breaks a ``ProcessPoolExecutor`` for good: every later submit
raises ``BrokenProcessPool``. :class:`FitPool` replaces the broken pool with a fresh one on the
next submit and counts it (``prewarm_fit_pool_restarts_total``, alerted on); the engine retries
the fits that died with it. Each worker asks the kernel to kill it when the daemon dies
(``PR_SET_PDEATHSIG``), so no signal, not even SIGKILL, leaves an orphaned worker behind, and
runs at a lower CPU priority than the serving process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("prewarm.fits")

P = ParamSpec("P")
T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
FIT_NICENESS = 10


def die_with_parent(parent: int) -> None:
    """Worker initializer: SIGKILL this process when the daemon (pid ``parent``) exits."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # not fatal: the daemon's shutdown still stops workers
            pass
    # The daemon may have died while this worker was still starting (before the line above):
    # then nobody will ever send work or a signal, so leave now.
    if os.getppid() != parent:
        os._exit(0)
    # Fits are batch work: the kernel gives the serving process the CPU first, so a refit never
    # slows an answer to KEDA (on a busy node they just take longer).
    with contextlib.suppress(OSError):
        os.nice(FIT_NICENESS)


class FitPool(Executor, Collector):
    """A process pool (spawn) that rebuilds itself when a worker died."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.restarts_total = 0
        self._lock = threading.Lock()
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                # A worker died (OOM killer, SIGKILL): this pool is done; start a fresh one.
                self.restarts_total += 1
                log.error("a fit worker died; replacing the fit pool (restart %d)", self.restarts_total)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new()
                return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("prewarm_fit_pool_restarts",
                                  "Fit pools replaced after a worker died (OOM killer, SIGKILL).",
                                  value=self.restarts_total)


def is_broken(exc: BaseException) -> bool:
    """A fit that failed because its worker died (retry it), not because of its data."""
    return isinstance(exc, BrokenProcessPool)


__all__ = ["FitPool", "die_with_parent", "is_broken"]
