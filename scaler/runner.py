"""One task runner with one failure policy for everything the daemon runs in the background.

Three shapes, one policy:

- ``spawn(task)``: a long-running task (a watch, the Lease, a config poll);
- ``every(name, seconds, job)``: a periodic job (refresh, refit), on APScheduler, never overlapping
  itself, with missed runs coalesced;
- ``once(name, job)``: a one-shot job (a backfill after a reload, the first refit).

The policy: data problems are handled inside the jobs (they hold the last decision); an exception
that escapes any of them is a bug. It is logged with the task's name and counted in
``prewarm_task_failures_total{task}``. A periodic or one-shot job then waits for its next run; a
long-running task that ends, by failure or not, stops the daemon with exit code 1, so Kubernetes
restarts it rather than running on without a watch or a Lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.edges import Task

log = logging.getLogger("prewarm")

Job = Callable[[], Awaitable[None]]


class TaskRunner(Collector):
    def __init__(self, stopping: asyncio.Event) -> None:
        self.stopping = stopping
        self.exit_code = 0
        self.failures: dict[str, int] = {}
        self.scheduler = AsyncIOScheduler()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, task: Task) -> None:
        self._start(task.__name__, task, critical=True)

    def once(self, name: str, job: Job) -> None:
        self._start(name, job, critical=False)

    def _known(self, name: str) -> None:
        """Exported at 0 from the start, so ``increase()`` over it is 0 rather than empty."""
        self.failures.setdefault(name, 0)

    def every(self, name: str, seconds: float, job: Job) -> None:
        """(Re)schedule ``job`` every ``seconds``; a changed interval replaces the old one."""

        async def run() -> None:
            await self._guard(name, job, critical=False)

        self._known(name)

        self.scheduler.add_job(run, "interval", seconds=seconds, id=name, name=name,
                               replace_existing=True, max_instances=1, coalesce=True,
                               misfire_grace_time=None)

    def start(self) -> None:
        self.scheduler.start()

    def _start(self, name: str, job: Job, *, critical: bool) -> None:
        self._known(name)
        task = asyncio.get_running_loop().create_task(self._guard(name, job, critical=critical), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, name: str, job: Job, *, critical: bool) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failures[name] = self.failures.get(name, 0) + 1
            log.exception("task %s failed%s", name, "; stopping" if critical else "")
            if critical:
                self._stop()
            return
        if critical and not self.stopping.is_set():
            log.error("task %s ended; stopping", name)
            self._stop()

    def _stop(self) -> None:
        self.exit_code = 1
        self.stopping.set()

    async def aclose(self) -> None:
        """Stop scheduling, cancel every task and wait for them."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily("prewarm_task_failures",
                                       "Background tasks that raised (a bug: see the log), by task.",
                                       labels=["task"])
        for name, n in sorted(self.failures.items()):
            failures.add_metric([name], n)
        yield failures
