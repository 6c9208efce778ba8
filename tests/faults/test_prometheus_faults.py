"""Faults production does to the metrics source, against a real Prometheus and a real
`prewarm serve` process (issue 12's first two rows).

- Slow but healthy: every query answers, each after a delay (a delaying HTTP proxy on loopback in
  front of the real Prometheus). GetMetrics must never fail: before the fix, the queries ran one
  after another and validity counted from the refresh start, so answers were expired when
  published.
- Partial data: one of a model's two scrape targets disappears (dropped from Prometheus' scrape
  config, as a pod that left service discovery). Replicas must not go down on the half that is
  left: before the fix, demand halved and the answer fell from 4 to 2. The hold is bounded: a
  lower target count is accepted after half of staleAfter (a genuine scale-in).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tests.prometheus.conftest import prom_binaries  # noqa: F401 (a fixture used below)
from tests.prometheus.fakeprom import FakePrometheus
from tests.support import promenv
from tests.support.keda_client import KedaClient
from tests.support.process import ServeProcess, start_serve
from tests.support.vllm_exporter import ExporterSpec, ModelSpec, PodSpec

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

SERVED = "fault/pair-8b"
DEMAND = 40  # over two pods (20 each) at capacity 10: 4 replicas; half of it reads as 2


@pytest.fixture(scope="module")
def pair(
    prom_binaries: tuple[str, str],  # noqa: F811 (the imported fixture)
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[promenv.PrometheusServer, promenv.ExporterProcess]]:
    """One model served by two pods (one engine each), scraped every second; no history."""
    trace = shared_data / "servegen" / "m-small_10min.csv"
    spec = ExporterSpec(models=(ModelSpec(SERVED, str(trace), mean_concurrency=20.0),),
                        pods=(PodSpec(SERVED), PodSpec(SERVED)))
    exporter = promenv.ExporterProcess.start(spec)
    server = promenv.PrometheusServer(prom_binaries[0], tmp_path_factory.mktemp("faults-prom"),
                                      exporter.targets)
    try:
        exporter.control(pin={SERVED: DEMAND})
        server.start()
        server.wait_scraped()
        yield server, exporter
    finally:
        server.stop()
        exporter.stop()


def write_config(path: Path, url: str, *, stale_after: str, timeout: str = "5s") -> Path:
    path.write_text(f"""
prometheus: {{url: "{url}", timeout: {timeout}, retries: 0}}
defaults: {{refreshInterval: 1s, staleAfter: {stale_after}, forecast: false, history: 1d, step: 1m,
            fitWorkers: 1, scaleDown: {{stabilization: 0s}}}}
models:
  - {{name: pair, servedModelName: "{SERVED}", capacityPerReplica: 10, maxReplicas: 50}}
""")
    return path


def scrape(server: ServeProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def first_answer(keda: KedaClient, timeout: float) -> float:
    began = time.monotonic()
    while (poll := await keda.poll()).error is not None:
        assert time.monotonic() - began < timeout, f"no valid answer within {timeout}s: {poll}"
        await asyncio.sleep(0.25)
    return poll.values[0]


def set_targets(server: promenv.PrometheusServer, targets: list[str]) -> None:
    """Rewrite the scrape config and reload it (SIGHUP), as service discovery changing would."""
    assert server.process is not None
    server.targets = targets
    server.write_config()
    server.process.send_signal(signal.SIGHUP)
    promenv.wait_for(lambda: len(server.query('up{job="vllm"}')) == len(targets), timeout=15,
                     what=f"{len(targets)} scrape targets", interval=0.2)


async def test_slow_but_healthy_prometheus_never_fails_getmetrics(
    pair: tuple[promenv.PrometheusServer, promenv.ExporterProcess], tmp_path: Path
) -> None:
    prometheus, _ = pair
    delay, stale_after, watch = 2.0, 25.0, 30.0
    with FakePrometheus(upstream=prometheus.url) as proxy:
        # Forwarded at once, answered `delay` later: healthy (well within the 5 s timeout), slow.
        proxy.handler = lambda request: replace(proxy.forward(request), delay=delay)
        config = write_config(tmp_path / "config.yaml", proxy.url, stale_after=f"{stale_after:.0f}s")
        server = start_serve(["--config", str(config)], tmp_path, timeout=90)
        channel = grpc.aio.insecure_channel(server.address)
        keda = KedaClient(channel, "pair")
        try:
            assert await first_answer(keda, timeout=3 * stale_after) == 4.0
            began, answered, failed = time.monotonic(), 0, []
            while time.monotonic() - began < watch:
                poll = await keda.poll()
                if poll.error is not None:
                    failed.append(f"{time.monotonic() - began:.1f}s {poll.error.name}")
                else:
                    answered += 1
                    assert poll.values == [4.0]
                await asyncio.sleep(0.5)
            print(f"{answered} answered, {len(failed)} failed over {watch:.0f}s at {delay}s a query")
            assert not failed, f"GetMetrics failed with a healthy Prometheus: {failed}"
            text = scrape(server)
            # each request's latency on /metrics: all of them above 1 s, none above 5 s
            count = sample(text, "prewarm_source_request_latency_seconds_count", '{kind="instant"}')
            fast = sample(text, "prewarm_source_request_latency_seconds_bucket", '{kind="instant",le="1"}')
            within = sample(text, "prewarm_source_request_latency_seconds_bucket", '{kind="instant",le="5"}')
            assert count > 0 and fast == 0 and within == count
        finally:
            await channel.close()
            assert server.terminate() == 0, server.output()[-3000:]


async def test_one_of_two_scrape_targets_disappearing_never_lowers_replicas(
    pair: tuple[promenv.PrometheusServer, promenv.ExporterProcess], tmp_path: Path
) -> None:
    prometheus, exporter = pair
    stale_after = 30.0
    accept_after = stale_after / 2  # the documented bound on the hold (targets.ACCEPT_FRACTION)
    config = write_config(tmp_path / "config.yaml", prometheus.url, stale_after=f"{stale_after:.0f}s")
    server = start_serve(["--config", str(config)], tmp_path)
    channel = grpc.aio.insecure_channel(server.address)
    keda = KedaClient(channel, "pair")
    both = list(exporter.targets)
    try:
        assert await first_answer(keda, timeout=20) == 4.0
        await asyncio.sleep(2.0)  # a few refreshes see both targets
        set_targets(prometheus, both[:1])
        dropped = time.monotonic()
        seen: list[tuple[float, float]] = []
        while time.monotonic() - dropped < accept_after - 3.0:
            poll = await keda.poll()
            assert poll.error is None, f"GetMetrics failed while holding: {poll}"
            seen.append((round(time.monotonic() - dropped, 1), poll.values[0]))
            await asyncio.sleep(0.25)
        print(f"answers after one target left: {seen}")
        assert all(value == 4.0 for _, value in seen), f"replicas went down on partial data: {seen}"
        text = scrape(server)
        assert sample(text, "prewarm_source_errors_total", '{reason="partial"}') >= 1
        assert sample(text, "prewarm_source_partial_models") == 1
        assert server.output().count("scrape targets report; its demand is unknown") == 1

        # A lower count that lasts is a scale-in: accepted after the bound, never held forever.
        began = time.monotonic()
        while (await first_answer(keda, timeout=5)) != 2.0:
            assert time.monotonic() - began < 10, "the lower target count was never accepted"
            await asyncio.sleep(0.25)
        accepted = time.monotonic() - dropped
        print(f"one target accepted as the new count {accepted:.1f}s after the drop")
        assert accept_after - 2.0 <= accepted <= accept_after + 5.0
    finally:
        await channel.close()
        assert server.terminate() == 0, server.output()[-3000:]
        set_targets(prometheus, both)
