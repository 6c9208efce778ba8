"""What thousands of models cost the daemon: start to SERVING, event-loop stalls, /metrics.

Runs a real `prewarm serve` on a replayed trace (so Prometheus is not what is measured) with
N models, then measures from outside, as KEDA and Prometheus would see it:

- seconds from process start to health SERVING, and whether every model answers then;
- GetMetrics latency while refreshes run (a client polls one model every 5 ms; its worst case
  includes the client's own scheduling and the first backfill);
- the event loop's longest stall during refreshes, measured inside the daemon's process;
- the time to scrape /metrics (all series of all models).

    python benchmarks/many_models.py --models 2000 --seconds 30

Issue 12's goals: SERVING with every model answering within 15 s at 2,000 models; no stall over
50 ms; /metrics in 0.5 s or less. Loopback only; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler._pb import externalscaler_pb2 as pb
from scaler._pb import externalscaler_pb2_grpc as pb_grpc
from tests.support.process import start_serve


def write_config(directory: Path, models: int) -> Path:
    trace = directory / "trace.csv"
    rows = ["timestamp_utc,requests\n"]
    for i in range(2 * 24 * 6):
        minutes = i * 10
        rows.append(f"2026-01-{1 + minutes // 1440:02d}T{minutes % 1440 // 60:02d}:{minutes % 60:02d}:00Z,1200\n")
    trace.write_text("".join(rows))
    lines = [f"replay: {{trace: {trace.name}}}",
             "defaults: {refreshInterval: 5s, staleAfter: 1m, forecast: false, history: 1d, step: 1m, fitWorkers: 1}",
             "models:"]
    lines += [f"  - {{name: model-{i}, capacityPerReplica: 50, maxReplicas: 20}}" for i in range(models)]
    path = directory / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def loop_stalls(config: Path, refreshes: int = 6) -> list[float]:
    """In the daemon's own process: gaps between the wakeups of a 1 ms ticker while refreshes run
    (what a gRPC handler waiting for the loop would wait at most), without a client's noise."""
    import gc

    from scaler.app import App, ServeOptions

    app = App(ServeOptions(config=config, listen="127.0.0.1:0", metrics_listen="127.0.0.1:0"))
    await app._refresh()
    gc.freeze()  # as serve does after its first refresh
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    for _ in range(refreshes):
        await app._refresh()
        await asyncio.sleep(0.3)
    done.set()
    await task
    app.executor.shutdown(wait=False)
    return sorted(gaps)


def request(model: str) -> pb.GetMetricsRequest:
    ref = pb.ScaledObjectRef(name="so", namespace="ns", scalerMetadata={"model": model})
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"prewarm-{model}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = write_config(tmp, args.models)
        began = time.monotonic()
        server = start_serve(["--config", str(config)], tmp, wait=False)
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                health, stub = health_pb2_grpc.HealthStub(channel), pb_grpc.ExternalScalerStub(channel)
                while True:
                    try:
                        status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                        if status.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() - began > 120 or server.proc.poll() is not None:
                        raise SystemExit(f"not SERVING after 120 s:\n{server.output()[-2000:]}")
                    await asyncio.sleep(0.02)
                serving = time.monotonic() - began
                failures = 0
                for i in range(0, args.models, max(1, args.models // 50)):
                    try:
                        await stub.GetMetrics(request(f"model-{i}"), timeout=2)
                    except grpc.aio.AioRpcError:
                        failures += 1
                print(f"{args.models} models: SERVING {serving:.1f} s after start; "
                      f"{failures} of 50 sampled models without an answer then")
                latencies = []
                stop = time.monotonic() + args.seconds
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    await stub.GetMetrics(request("model-7"), timeout=5)
                    latencies.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.005)
                latencies.sort()
                print(f"GetMetrics over {args.seconds:.0f} s ({len(latencies)} calls, refresh every 5 s): "
                      f"p50 {1000 * statistics.median(latencies):.2f} ms, "
                      f"p99 {1000 * latencies[int(0.99 * len(latencies))]:.1f} ms, "
                      f"max {1000 * latencies[-1]:.0f} ms (client included)")
            scrapes = []
            for _ in range(5):
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30) as r:
                    body = r.read()
                scrapes.append(time.perf_counter() - t0)
            series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
            print(f"/metrics: {series} series, {len(body) / 1e6:.1f} MB, "
                  f"median {statistics.median(scrapes):.2f} s, max {max(scrapes):.2f} s over 5 scrapes")
        finally:
            server.terminate()
        gaps = await loop_stalls(config)
        print(f"event loop, in-process, 6 refreshes: longest stall {1000 * gaps[-1]:.0f} ms, "
              f"p99 {1000 * gaps[int(0.99 * len(gaps))]:.0f} ms (goal: never over 50 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to poll GetMetrics")
    asyncio.run(main(parser.parse_args()))
