"""End to end: `prewarm serve --config` reading a real Prometheus that scrapes the vLLM stand-in;
a KEDA-like client sees the replicas the decision core computes from what the exporter serves.

Fail static: Prometheus stopped -> the last value holds (never a scale-down), then GetMetrics
fails UNAVAILABLE after staleAfter; Prometheus back -> right answers within a refresh. Garbage
and slow answers come from a tiny HTTP server in front of the real Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.prometheus.conftest import MID, SMALL
from tests.prometheus.fakeprom import FakePrometheus, Reply
from tests.support import promenv
from tests.support.keda_client import KedaClient, Poll
from tests.support.process import ServeProcess, start_serve

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

REFRESH, STALE_AFTER = 1.0, 10.0
FIRST_SCRAPE = 7.0
"""Seconds from a (re)started Prometheus being ready to its first scrape of every target."""
CAPACITY = {"small": 10.0, "mid": 2.0}


def write_config(path: Path, url: str, *, timeout: str = "2s", retries: int = 1) -> Path:
    path.write_text(f"""
prometheus: {{url: "{url}", timeout: {timeout}, retries: {retries}}}
defaults: {{refreshInterval: 1s, staleAfter: 10s, forecast: false, history: 1d, step: 1m,
            fitWorkers: 1, scaleDown: {{stabilization: 0s}}}}
models:
  - {{name: small, servedModelName: {json.dumps(SMALL)}, capacityPerReplica: 10, maxReplicas: 50}}
  - {{name: mid, servedModelName: {json.dumps(MID)}, capacityPerReplica: 2, maxReplicas: 50}}
""")
    return path


def expected(exporter: promenv.ExporterProcess) -> dict[str, float]:
    """ceil(demand / capacity) from what the exporter serves (forecast off, no standby, min 0,
    no scale-down stabilization: so a held value is the fail-static rule at work, not the
    stabilization window)."""
    state = exporter.state()
    demand = {"small": state[SMALL]["concurrency"], "mid": state[MID]["concurrency"]}
    return {k: float(math.ceil(v / CAPACITY[k])) for k, v in demand.items()}


class Keda:
    """Polls both models like KEDA does (GetMetricSpec, GetMetrics, IsActive)."""

    def __init__(self, server: ServeProcess) -> None:
        self.channel = grpc.aio.insecure_channel(server.address)
        self.clients = {m: KedaClient(self.channel, m) for m in CAPACITY}

    async def poll(self) -> dict[str, Poll]:
        return {m: await c.poll() for m, c in self.clients.items()}

    async def values(self) -> dict[str, float] | None:
        polls = await self.poll()
        if any(p.error is not None for p in polls.values()):
            return None
        return {m: p.values[0] for m, p in polls.items()}

    async def until(self, check: Callable[[dict[str, float] | None], bool], *,
                    timeout: float, what: str) -> float:
        """Seconds until ``check(values)`` holds."""
        began = time.monotonic()
        while not check(await self.values()):
            if time.monotonic() - began > timeout:
                raise AssertionError(f"{what}: not within {timeout}s; last {await self.poll()}")
            await asyncio.sleep(0.2)
        return time.monotonic() - began

    async def close(self) -> None:
        await self.channel.close()


def source_errors(server: ServeProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in
            re.finditer(r'^prewarm_source_errors_total\{reason="([^"]+)"\} (\S+)$', text, re.M)}


async def test_serve_follows_prometheus_and_fails_static(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess, tmp_path: Path
) -> None:
    exporter.control(pin={SMALL: 37, MID: 5})
    config = write_config(tmp_path / "config.yaml", prom_env.prometheus.url)
    server = start_serve(["--config", str(config)], tmp_path)
    keda = Keda(server)
    try:
        want = expected(exporter)
        assert want == {"small": 4.0, "mid": 3.0}  # ceil(37 / 10), ceil(5 / 2)
        await keda.until(lambda v: v == want, timeout=15, what="first answers")
        exporter.control(pin={SMALL: 85})
        await keda.until(lambda v: v == {"small": 9.0, "mid": 3.0}, timeout=5,
                         what="answers follow live demand (scrape 1s + refresh 1s)")

        # Prometheus down: the value holds, never lower, then UNAVAILABLE after staleAfter.
        prom_env.prometheus.stop()
        stopped = time.monotonic()
        held: list[dict[str, float]] = []
        while (values := await keda.values()) is not None:
            held.append(values)
            assert time.monotonic() - stopped < STALE_AFTER + 5, "never turned UNAVAILABLE"
            await asyncio.sleep(0.25)
        failed_after = time.monotonic() - stopped
        print(f"UNAVAILABLE {failed_after:.1f}s after Prometheus stopped")
        assert held and all(v == {"small": 9.0, "mid": 3.0} for v in held)
        assert STALE_AFTER - 2 * REFRESH <= failed_after <= STALE_AFTER + 3 * REFRESH
        # Each model expires on its own data's scrape time: the other follows within a scrape.
        deadline = time.monotonic() + 2 * REFRESH + 2
        while True:
            polls = await keda.poll()
            if {p.error for p in polls.values()} == {grpc.StatusCode.UNAVAILABLE}:
                break
            assert time.monotonic() < deadline, polls
            await asyncio.sleep(0.25)
        assert source_errors(server).get("unreachable", 0) >= 1

        # Prometheus back: right answers once it has scraped again (the samples it kept from
        # before the stop are older than staleAfter by then: their scrape time says so), within
        # a refresh of that first scrape (~6 s after a start: target discovery runs every 5 s).
        prom_env.prometheus.start()
        recovered = await keda.until(lambda v: v == {"small": 9.0, "mid": 3.0},
                                     timeout=15, what="answers after Prometheus restarts")
        print(f"right answers {recovered:.1f}s after Prometheus was ready again")
        assert recovered <= FIRST_SCRAPE + REFRESH + 1.5, server.output()[-3000:]
        prom_env.prometheus.wait_scraped()
    finally:
        await keda.close()
        assert server.terminate() == 0, server.output()[-3000:]
        if prom_env.prometheus.process is None:
            prom_env.prometheus.start()


async def test_serve_holds_through_garbage_and_slow_answers(
    prom_env: promenv.PromEnv, exporter: promenv.ExporterProcess, tmp_path: Path
) -> None:
    exporter.control(pin={SMALL: 21, MID: 4})
    with FakePrometheus(upstream=prom_env.prometheus.url) as proxy:
        config = write_config(tmp_path / "config.yaml", proxy.url, timeout="500ms", retries=1)
        server = start_serve(["--config", str(config)], tmp_path)
        keda = Keda(server)
        try:
            await keda.until(lambda v: v == {"small": 3.0, "mid": 2.0}, timeout=15,
                             what="first answers through the proxy")
            for reply, reason in ((Reply(body="<html>oops</html>"), "bad_response"),
                                  (Reply(delay=3.0), "timeout")):
                proxy.handler = lambda request, reply=reply: reply
                began = time.monotonic()
                while source_errors(server).get(reason, 0) < 1:
                    assert time.monotonic() - began < 5, f"no {reason} error counted"
                    await asyncio.sleep(0.2)
                # the last good answer holds (well within staleAfter)
                assert await keda.values() == {"small": 3.0, "mid": 2.0}
            exporter.control(pin={SMALL: 55})
            await asyncio.sleep(1.5)  # scraped while prewarm cannot see it
            assert await keda.values() == {"small": 3.0, "mid": 2.0}
            proxy.handler = proxy.forward
            recovered = await keda.until(lambda v: v == {"small": 6.0, "mid": 2.0}, timeout=10,
                                         what="answers after the proxy recovers")
            assert recovered <= 3 * REFRESH + 1.5  # a slow refresh may still be finishing
        finally:
            await keda.close()
            assert server.terminate() == 0, server.output()[-3000:]
