"""The fit pool: worker processes for forecaster fits and SLO tuning, that heal and never outlive
the daemon.

A worker killed by the OOM killer breaks a ``ProcessPoolExecutor`` for good: every later submit
raises ``BrokenProcessPool``. :class:`FitPool` replaces the broken pool with a fresh one on the
next submit and counts it (``prewarm_fit_pool_restarts_total``, alerted on); the engine retries
the fits that died with it. A worker killed halfway through sending its result would leave the
pool waiting for the rest forever, so a watch thread breaks such a pool (:func:`keep_unstuck`).
Each worker watches its parent and exits within :data:`PARENT_POLL_SECONDS` of the daemon's
death (a worker inside one long native call, holding the GIL, when that call returns), so no
signal, not even SIGKILL, leaves an orphaned worker behind; and it runs at a lower CPU priority
than the serving process.

Why a watch and not Linux's ``PR_SET_PDEATHSIG``: the kernel sends that signal when the *thread*
that started the worker ends, not the process. The pool starts workers in whichever thread
submits first, so a worker started from a short-lived thread was killed while the daemon was fine
(and the next fit found a broken pool). ``os.getppid()`` changes only when the whole parent
process is gone (the worker is handed to init or a subreaper).

:meth:`FitPool.close` stops the pool for good before the interpreter exits: fits in flight are
discarded, the workers killed, and the pool's manager thread joined. A pool left to the
interpreter's exit (``shutdown(wait=False)``) races its manager thread on Python < 3.12: the exit
hook wakes the thread through a pipe the thread may be closing that instant, which prints an
``Exception ignored in: <module 'threading'>`` traceback on the daemon's last line of stderr.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, TypeVar

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("prewarm.fits")

P = ParamSpec("P")
T = TypeVar("T")

FIT_NICENESS = 10
PARENT_POLL_SECONDS = 0.5
"""How often a worker checks that the process that started it is still there."""
STUCK_AFTER_SECONDS = 5.0
"""How long a worker may lie dead before its pool counts as stuck (a sound pool notices at once)."""


def die_with_parent(parent: int) -> None:
    """Worker initializer: exit when the daemon (pid ``parent``) is gone, and yield it the CPU."""
    # The daemon may have died while this worker was still starting: nobody will ever send it
    # work, so leave now.
    if os.getppid() != parent:
        os._exit(0)
    threading.Thread(target=_watch_parent, args=(parent,), name="prewarm-parent-watch",
                     daemon=True).start()
    # Fits are batch work: the kernel gives the serving process the CPU first, so a refit never
    # slows an answer to KEDA (on a busy node they just take longer).
    with contextlib.suppress(OSError):
        os.nice(FIT_NICENESS)


def _watch_parent(parent: int) -> None:
    """Exit this worker at once (no cleanup: its fit is worthless) when ``parent`` is gone."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


class FitPool(Executor, Collector):
    """A process pool (spawn) that rebuilds itself when a worker died."""

    def __init__(self, workers: int, *, stuck_after: float = STUCK_AFTER_SECONDS) -> None:
        self.workers = workers
        self.restarts_total = 0
        self._stuck_after = stuck_after
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return spawn_pool(self.workers, stuck_after=self._stuck_after)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the fit pool is closed")
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
            self._closed = True
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def close(self, timeout: float = 10.0) -> None:
        """Stop now, for good: drop queued fits, kill the workers mid-fit (a fit is redone at the
        next start), and wait up to ``timeout`` s for the pool's manager thread to end."""
        with self._lock:
            self._closed = True
            stop_pool(self._pool, timeout)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("prewarm_fit_pool_restarts",
                                  "Fit pools replaced after a worker died (OOM killer, SIGKILL).",
                                  value=self.restarts_total)


def spawn_pool(workers: int, *, stuck_after: float = STUCK_AFTER_SECONDS) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that die with this one and run at a lower CPU
    priority (:func:`die_with_parent`), watched for a worker that dies halfway through sending a
    result (:func:`keep_unstuck`)."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
    keep_unstuck(pool, stuck_after)
    return pool


def stop_pool(pool: ProcessPoolExecutor, timeout: float) -> None:
    """Shut ``pool`` down without waiting for its work, and be done with it when this returns."""
    # Private attributes, stable since Python 3.9 (3.14 adds ``kill_workers()``); read before
    # shutdown(), which drops them. The dict itself, not a copy: a submit in another thread may
    # be starting a worker right now, and shutdown() waits for it to be in there.
    workers: dict[int, multiprocessing.process.BaseProcess] = getattr(pool, "_processes", None) or {}
    results = getattr(pool, "_result_queue", None)
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    _kill(workers, results)
    # The manager thread sees its workers die, fails their futures, closes its pipes and ends.
    if manager is not None:
        manager.join(timeout)
        if manager.is_alive():
            log.warning("the fit pool did not stop within %.0f s", timeout)


def keep_unstuck(pool: ProcessPoolExecutor, after: float = STUCK_AFTER_SECONDS) -> None:
    """Watch ``pool`` from a thread until it is shut down or broken, and :func:`unstick` it if a
    worker dies halfway through sending a result: its futures then fail with
    ``BrokenProcessPool`` instead of waiting forever."""
    def watch() -> None:
        dead_since: dict[int, float] = {}
        while not getattr(pool, "_shutdown_thread", True):
            if unstick(pool, dead_since, time.monotonic(), after):
                return
            time.sleep(min(1.0, after / 2))

    threading.Thread(target=watch, name="prewarm-pool-watch", daemon=True).start()


def unstick(pool: ProcessPoolExecutor, dead_since: dict[int, float], now: float, after: float) -> bool:
    """Break ``pool`` for good when a worker has lain dead ``after`` s without the pool noticing.

    A sound pool marks itself broken the moment a worker dies. One whose worker died (OOM killer)
    while sending a large result does not: its manager thread waits for the rest of that message
    forever, and every fit in flight with it. Killing the other workers and closing this
    process's write end of the result pipe ends the wait; the pool then fails its fits as broken.
    ``dead_since`` (pid -> first seen dead) is the caller's memory between calls. True when it acted.
    """
    workers = getattr(pool, "_processes", None) or {}
    if getattr(pool, "_broken", False) or not workers:
        return False  # noticed (the next submit replaces it), or shut down
    for pid, worker in list(workers.items()):
        if worker.exitcode is not None:
            dead_since.setdefault(pid, now)
    if not any(now - since >= after for pid, since in dead_since.items() if pid in workers):
        return False
    log.error("a pool worker died %.0f s ago and its pool has not noticed (killed halfway through "
              "sending a result); breaking the pool, so its work fails as a dead worker's", after)
    _kill(workers, getattr(pool, "_result_queue", None))
    return True


def _kill(workers: dict[int, multiprocessing.process.BaseProcess], results: Any) -> None:
    """Kill a pool's workers, and end its result pipe once they are gone."""
    for worker in list(workers.values()):
        with contextlib.suppress(Exception):  # already gone
            worker.kill()
    # A worker killed while it sent a large result left half a message in the result pipe, and
    # the manager thread waits for the rest: the pipe never ends while this process holds a
    # write end too. Closing that end (the workers have theirs; the parent writes nothing to
    # it) turns the wait into an end-of-file once the workers are gone.
    if results is not None:
        with contextlib.suppress(OSError):
            results._writer.close()


def kill_children(timeout: float = 5.0) -> None:
    """Kill every process this one started through ``multiprocessing`` and reap them: the last
    thing a command does on Ctrl-C.

    A Ctrl-C can land while a pool is starting a worker. The process then exists, but the pool
    does not list it yet, so :func:`stop_pool` cannot kill it; and Python's exit joins every child
    it started - forever, since that worker waits for work from a parent that waits for it, and
    its parent watch sees the parent alive. Found by interrupting ``prewarm backtest`` at
    5-millisecond steps: about one interrupt in a hundred, landing half a second in, hung it.
    """
    children = multiprocessing.active_children()
    for child in children:
        with contextlib.suppress(Exception):  # already gone
            child.kill()
    for child in children:
        child.join(timeout)


def is_broken(exc: BaseException) -> bool:
    """A fit that failed because its worker died (retry it), not because of its data."""
    return isinstance(exc, BrokenProcessPool)


__all__ = ["FitPool", "die_with_parent", "is_broken", "keep_unstuck", "kill_children", "spawn_pool", "stop_pool",
           "unstick"]
