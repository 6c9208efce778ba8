"""GetMetrics throughput of prewarm's gRPC server against a trivial grpc.aio ExternalScaler (issue 12, item 7).

Two server processes, both pinned to the same core (``os.sched_setaffinity`` inside each):

- ``prewarm``: the KEDA edge as ``serve`` runs it - ``create_grpc_server`` (health, reflection) with
  the real ``ExternalScalerServicer`` over a published snapshot of ``--models`` models;
- ``trivial``: a bare grpc.aio server whose ExternalScaler answers every GetMetrics with a constant.

A client on the other core drives one server at a time with ``--concurrency`` callers for
``--seconds``; the servers take turns (the order flips every round). Each run reports GetMetrics
calls per server CPU-second (the server process's utime + stime from /proc, all its threads, no
children) and the client-side p50/p99 latency. Two phases: ``idle``, and ``refit`` - a fit pool
of ``--fit-workers`` processes on the other core running real forecaster fits back to back, driven
from the prewarm server's event loop as ``serve`` drives its refits (for the trivial server the
same pool runs in a process of its own, so the machine is equally busy). Loopback only; bounded
by rounds x seconds.

    .venv/bin/python benchmarks/grpc_throughput.py                 # 500 models, 3 rounds of 3 s
    .venv/bin/python benchmarks/grpc_throughput.py --profile /tmp/prewarm.prof   # + cProfile of the server

Goal (issue 12): ratio prewarm/trivial >= 0.9 and p99 <= 1.5x the trivial's, in both phases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from scaler._pb import externalscaler_pb2 as pb  # noqa: E402
from scaler._pb import externalscaler_pb2_grpc as pb_grpc  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
FIT_STEP_SECONDS = 300
FIT_DAYS = 7


# --- servers (child processes) ---------------------------------------------------------------------


def pin(core: int) -> None:
    os.sched_setaffinity(0, {core})


class TrivialServicer(pb_grpc.ExternalScalerServicer):
    """The framework alone: a constant answer, no lookup."""

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Any) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(metricValues=[pb.MetricValue(metricName="x", metricValue=3,
                                                                  metricValueFloat=3.0)])


async def start_prewarm(models: int) -> Any:
    from scaler.core.clock import SystemClock
    from scaler.core.config import parse_settings
    from scaler.core.model import Decision, Reason
    from scaler.edges.keda.server import create_grpc_server
    from scaler.edges.keda.servicer import ExternalScalerServicer, GrpcMetrics
    from scaler.snapshot import Snapshot, SnapshotHolder

    settings = parse_settings({
        "prometheus": {"url": "http://127.0.0.1:9"},
        "models": [{"name": f"m{i}", "capacityPerReplica": 4} for i in range(models)],
    }).settings
    now = time.time()
    decisions = {m.name: Decision(model=m.name, at=now, replicas=3, reason=Reason.FORECAST, valid=True,
                                  active=True, expires_at=now + 86400.0) for m in settings.models}
    holder = SnapshotHolder(Snapshot(at=now, generation=1, settings=settings, decisions=decisions))

    def finish(model: str, overrides: Any) -> Snapshot:
        raise AssertionError("the benchmark asks without overrides")

    servicer = ExternalScalerServicer(holder, SystemClock(), GrpcMetrics(), finish)
    server, _health, port = await create_grpc_server(servicer, "127.0.0.1:0", None)
    return server, port


async def start_trivial() -> Any:
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(TrivialServicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def fit_series() -> Any:
    import numpy as np

    from forecasting import Series

    n = FIT_DAYS * 86400 // FIT_STEP_SECONDS
    t = np.arange(n) * FIT_STEP_SECONDS
    rng = np.random.default_rng(7)
    values = 40 + 25 * np.sin(2 * np.pi * t / 86400) + rng.poisson(5, n)
    return Series(start=1_700_000_000.0, step_seconds=FIT_STEP_SECONDS, values=values.astype(float))


def fit_once(series: Any) -> Any:
    from scaler.core.forecasts import fit_job

    return fit_job(series, 12, (86400,))


def worker_init(core: int) -> None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    pin(core)


class RefitLoad:
    """Fit jobs back to back in a spawn pool on ``core``; results come back into this process and
    are unpickled on its event loop, as the engine's refits are."""

    def __init__(self, workers: int, core: int) -> None:
        import multiprocessing

        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=worker_init, initargs=(core,))
        self.series = fit_series()
        self.task: asyncio.Task[None] | None = None
        self.fits = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.gather(*(loop.run_in_executor(self.pool, fit_once, self.series)
                                   for _ in range(self.workers)))
            self.fits += self.workers

    def on(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def off(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
            print(f"    ({self.fits} fits done so far)", file=sys.stderr, flush=True)


async def serve(kind: str, args: argparse.Namespace) -> None:
    pin(args.server_core)
    server, port = await (start_prewarm(args.models) if kind == "prewarm" else start_trivial())
    load = RefitLoad(args.fit_workers, args.other_core) if kind in ("prewarm", "refit-load") else None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if load is not None:
        loop.add_signal_handler(signal.SIGUSR1, load.on)
        loop.add_signal_handler(signal.SIGUSR2, load.off)
        # warm the pool (spawn + imports) before any measured run
        await loop.run_in_executor(load.pool, fit_once, load.series)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    profile = cProfile.Profile() if args.profile and kind == "prewarm" else None
    print(f"PORT {port}", flush=True)
    if profile is not None:
        profile.enable()
    await stop.wait()
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
    if load is not None:
        load.off()
        load.pool.shutdown(wait=False, cancel_futures=True)
    if server is not None:
        await server.stop(0)


async def refit_only(args: argparse.Namespace) -> None:
    """The trivial server's refit phase: the same pool, in a process of its own."""
    load = RefitLoad(args.fit_workers, args.other_core)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(load.pool, fit_once, load.series)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("PORT 0", flush=True)
    load.on()
    await stop.wait()
    load.off()
    load.pool.shutdown(wait=False, cancel_futures=True)


# --- the driver ---------------------------------------------------------------------------------------


@dataclass
class Run:
    kind: str
    phase: str
    calls: int
    errors: int
    cpu_seconds: float
    wall_seconds: float
    latencies: list[float]

    @property
    def per_cpu_second(self) -> float:
        return self.calls / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def spawn(mode: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, __file__, "--role", mode, "--models", str(args.models),
           "--server-core", str(args.server_core), "--other-core", str(args.other_core),
           "--fit-workers", str(args.fit_workers)]
    if args.profile:
        cmd += ["--profile", args.profile]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{mode} did not start: {line!r}")
    return proc, int(line.split()[1])


async def drive(port: int, models: int, seconds: float, concurrency: int) -> tuple[int, int, list[float]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        requests = [pb.GetMetricsRequest(
            scaledObjectRef=pb.ScaledObjectRef(name=f"vllm-m{i}", namespace="llm", scalerMetadata={
                "model": f"m{i}", "scalerAddress": "prewarm.prewarm.svc.cluster.local:9090"}),
            metricName=f"prewarm-m{i}") for i in range(models)]
        for request in requests[:concurrency]:  # connect and warm up
            await stub.GetMetrics(request, timeout=10)
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    await stub.GetMetrics(requests[i % models], timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - began)
                i += concurrency

        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        return len(latencies) - errors, errors, latencies


def measure(kind: str, phase: str, proc: subprocess.Popen[str], port: int, args: argparse.Namespace) -> Run:
    began_cpu, began = cpu_seconds(proc.pid), time.perf_counter()
    calls, errors, latencies = asyncio.run(drive(port, args.models, args.seconds, args.concurrency))
    return Run(kind, phase, calls, errors, cpu_seconds(proc.pid) - began_cpu, time.perf_counter() - began,
               latencies)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(runs: list[Run]) -> None:
    print(f"\n{'phase':6} {'server':8} {'runs':>4} {'calls':>7} {'cpu s':>6} {'calls/cpu-s':>12} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'rps':>6}")
    summary: dict[tuple[str, str], tuple[float, float, float]] = {}
    for phase in ("idle", "refit"):
        for kind in ("prewarm", "trivial"):
            mine = [r for r in runs if r.kind == kind and r.phase == phase]
            if not mine:
                continue
            calls = sum(r.calls for r in mine)
            cpu = sum(r.cpu_seconds for r in mine)
            lat = [x for r in mine for x in r.latencies]
            rate = calls / cpu
            p50, p99 = quantile(lat, 0.5) * 1e3, quantile(lat, 0.99) * 1e3
            summary[(phase, kind)] = (rate, p50, p99)
            spread = [round(r.per_cpu_second) for r in mine]
            print(f"{phase:6} {kind:8} {len(mine):>4} {calls:>7} {cpu:>6.2f} {rate:>12.0f} {p50:>7.2f} "
                  f"{p99:>7.2f} {calls / sum(r.wall_seconds for r in mine):>6.0f}   per run {spread}")
            if any(r.errors for r in mine):
                print(f"       {sum(r.errors for r in mine)} calls failed")
    for phase in ("idle", "refit"):
        if (phase, "prewarm") in summary and (phase, "trivial") in summary:
            p, t = summary[(phase, "prewarm")], summary[(phase, "trivial")]
            print(f"{phase}: calls per CPU-second prewarm/trivial = {p[0] / t[0]:.2f} (goal >= 0.9); "
                  f"p99 prewarm/trivial = {p[2] / t[2]:.2f}x (goal <= 1.5x); "
                  f"median per-run ratio {statistics.median(ratios(phase)) if ratios(phase) else float('nan'):.2f}")


_RUNS: list[Run] = []


def ratios(phase: str) -> list[float]:
    """Per round, prewarm's calls per CPU-second over the trivial's (the runs of a round are adjacent)."""
    p = [r.per_cpu_second for r in _RUNS if r.kind == "prewarm" and r.phase == phase]
    t = [r.per_cpu_second for r in _RUNS if r.kind == "trivial" and r.phase == phase]
    return [a / b for a, b in zip(p, t, strict=False)]


def main(args: argparse.Namespace) -> None:
    if len(os.sched_getaffinity(0)) < 2 and args.server_core == args.other_core:
        sys.exit("needs two cores (--server-core, --other-core)")
    pin(args.other_core)  # the client never takes the servers' core
    servers = {kind: spawn(kind, args) for kind in ("prewarm", "trivial")}
    print(f"{args.models} models; servers on core {args.server_core}, client and fits on core "
          f"{args.other_core}; {args.rounds} rounds x {args.seconds:.0f} s x 2 servers x 2 phases; "
          f"concurrency {args.concurrency}, {args.fit_workers} fit workers")
    try:
        for phase in ("idle", "refit"):
            for n in range(args.rounds):
                for kind in (("prewarm", "trivial") if n % 2 == 0 else ("trivial", "prewarm")):
                    proc, port = servers[kind]
                    helper = None
                    if phase == "refit":
                        if kind == "prewarm":
                            proc.send_signal(signal.SIGUSR1)
                        else:
                            helper = spawn("refit-load", args)[0]
                        time.sleep(1.0)  # the pool is busy before the run starts
                    try:
                        run = measure(kind, phase, proc, port, args)
                    finally:
                        if kind == "prewarm" and phase == "refit":
                            proc.send_signal(signal.SIGUSR2)
                        if helper is not None:
                            helper.terminate()
                            helper.wait(30)
                    _RUNS.append(run)
                    print(f"  {phase} round {n + 1} {kind:8} {run.calls:6d} calls {run.cpu_seconds:5.2f} cpu-s "
                          f"{run.per_cpu_second:7.0f}/cpu-s  p50 {quantile(run.latencies, 0.5) * 1e3:5.2f} ms "
                          f"p99 {quantile(run.latencies, 0.99) * 1e3:6.2f} ms", flush=True)
    finally:
        for proc, _port in servers.values():
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
    report(_RUNS)
    if args.profile:
        print(f"\ncProfile of the prewarm server (its main thread; gRPC's C core is not seen): {args.profile}")
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(18)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fit-workers", type=int, default=2)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--other-core", type=int, default=1)
    parser.add_argument("--profile", default="", help="cProfile the prewarm server into this file")
    parser.add_argument("--role", default="driver", choices=["driver", "prewarm", "trivial", "refit-load"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (1 <= args.models <= 100_000 and 1 <= args.rounds <= 20 and 0.5 <= args.seconds <= 60
            and 1 <= args.concurrency <= 256 and 0 <= args.fit_workers <= 8):
        parser.error("out of bounds: models 1-100000, rounds 1-20, seconds 0.5-60, concurrency 1-256, "
                     "fit workers 0-8")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.role == "driver":
        main(arguments)
    elif arguments.role == "refit-load":
        asyncio.run(refit_only(arguments))
    else:
        asyncio.run(serve(arguments.role, arguments))
