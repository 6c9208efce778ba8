"""Faults production does to the daemon itself, against a real `prewarm serve` process.

Issue 12's table, the rows that are the daemon's own: SIGTERM with callers in flight, SIGHUP,
a fit worker killed as the OOM killer does, readiness before the first decision, and bounded
error messages. Each test failed on the code before the fix.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scaler._pb import externalscaler_pb2 as pb
from scaler._pb import externalscaler_pb2_grpc as pb_grpc
from tests.e2e.test_serve_process import config_text, metrics_text, write_trace
from tests.support.process import alive, children, start_serve

pytestmark = pytest.mark.slow

CALLERS = 32


def ref(model: str = "llama", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="so", namespace="default", scalerMetadata={"model": model, **metadata})


def request(model: str = "llama", **metadata: str) -> pb.GetMetricsRequest:
    return pb.GetMetricsRequest(scaledObjectRef=ref(model, **metadata), metricName=f"prewarm-{model}")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    trace = write_trace(tmp_path / "trace.csv", 1200)
    path = tmp_path / "config.yaml"
    path.write_text(config_text(trace))
    return path


async def wait_answering(address: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        while True:
            try:
                await stub.GetMetrics(request(), timeout=2)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def test_sigterm_lets_every_call_in_flight_finish(config_file: Path, tmp_path: Path) -> None:
    server = start_serve(["--config", str(config_file)], tmp_path)
    try:
        await wait_answering(server.address)
        signalled: list[float] = []
        outcomes: list[tuple[float, grpc.StatusCode]] = []

        async def caller() -> None:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = pb_grpc.ExternalScalerStub(channel)
                while True:
                    started = time.monotonic()
                    try:
                        await stub.GetMetrics(request(), timeout=10)
                        code = grpc.StatusCode.OK
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code()
                    outcomes.append((started, code))
                    if signalled and code != grpc.StatusCode.OK:
                        return  # refused after the signal: the drain has begun for this caller

        callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        await asyncio.sleep(1.0)
        signalled.append(time.monotonic())
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*callers), 30)
        rc = await asyncio.to_thread(server.proc.wait, 30)
    finally:
        server.kill()
    in_flight = [code for started, code in outcomes if started < signalled[0]]
    assert len(in_flight) > CALLERS
    assert grpc.StatusCode.CANCELLED not in in_flight, server.output()[-3000:]
    assert all(code == grpc.StatusCode.OK for code in in_flight), {c.name for c in in_flight}
    assert rc == 0, server.output()[-3000:]


async def test_sighup_reloads_the_config_and_keeps_serving(config_file: Path, tmp_path: Path) -> None:
    server = start_serve(["--config", str(config_file)], tmp_path)
    try:
        await wait_answering(server.address)
        config_file.write_text(config_file.read_text().replace("maxReplicas: 20", "maxReplicas: 2"))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            while True:
                answer = await stub.GetMetrics(request(), timeout=2)
                if answer.metricValues[0].metricValue == 2:
                    break
                assert time.monotonic() < deadline, server.output()[-3000:]
                await asyncio.sleep(0.3)
        assert server.proc.poll() is None, "SIGHUP must not stop the daemon"
        assert "prewarm_config_reloads_total 1.0" in metrics_text(server.metrics_port)
    finally:
        assert server.terminate() == 0


def fit_workers(pid: int) -> list[int]:
    """Child processes of ``pid`` running the fit pool (multiprocessing spawn children)."""
    return [child for child, cmdline in children(pid).items()
            if "multiprocessing" in cmdline and "resource_tracker" not in cmdline]


def forecast_config(tmp_path: Path) -> Path:
    trace = write_trace(tmp_path / "trace.csv", 1200, days=3)
    path = tmp_path / "forecast.yaml"
    # Replayed 6x fast: a refit every 10 s of wall time (refitInterval is at least one step).
    text = config_text(trace).replace("forecast: false", "forecast: true, refitInterval: 1m")
    path.write_text(text.replace(f"{{trace: {trace.name}}}", f"{{trace: {trace.name}, speed: 6}}"))
    return path


async def test_a_killed_fit_worker_is_replaced_and_fits_resume(tmp_path: Path) -> None:
    server = start_serve(["--config", str(forecast_config(tmp_path))], tmp_path)
    try:
        await wait_answering(server.address)
        deadline = time.monotonic() + 60
        while not fit_workers(server.proc.pid):
            assert time.monotonic() < deadline, "no fit worker started"
            await asyncio.sleep(0.5)
        for pid in fit_workers(server.proc.pid):
            os.kill(pid, signal.SIGKILL)  # what the OOM killer does
        killed_at = time.time()
        deadline = time.monotonic() + 60
        while True:
            text = metrics_text(server.metrics_port)
            restarts = [line for line in text.splitlines() if line.startswith("prewarm_fit_pool_restarts_total ")]
            refits = [line for line in text.splitlines() if line.startswith("prewarm_fit_timestamp_seconds")]
            if restarts and float(restarts[0].split()[1]) >= 1 and refits:
                fitted_at = float(refits[0].split()[1])
                if fitted_at > killed_at:  # the replay clock runs ahead of wall time, never behind
                    break
            assert time.monotonic() < deadline, server.output()[-4000:]
            await asyncio.sleep(1.0)
    finally:
        rc = server.terminate()
    assert rc == 0
    assert not fit_workers(server.proc.pid)


def test_sigkill_of_the_daemon_takes_its_fit_workers_along(tmp_path: Path) -> None:
    server = start_serve(["--config", str(forecast_config(tmp_path))], tmp_path)
    deadline = time.monotonic() + 60
    while not (workers := fit_workers(server.proc.pid)):
        assert time.monotonic() < deadline, "no fit worker started"
        time.sleep(0.5)
    server.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"fit workers {workers} outlived the daemon"
        time.sleep(0.2)


async def test_not_serving_until_every_model_has_a_decision(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.csv", 1200)
    models = "\n".join(f"  - {{name: m{i}, capacityPerReplica: 50, maxReplicas: 20}}" for i in range(300))
    path = tmp_path / "many.yaml"
    path.write_text(config_text(trace).split("models:")[0] + "models:\n" + models + "\n")
    server = start_serve(["--config", str(path)], tmp_path, wait=False)
    try:
        deadline = time.monotonic() + 60
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.ExternalScalerStub(channel)
            while True:
                try:
                    status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                except grpc.aio.AioRpcError:
                    status = None
                if status is not None and status.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                assert time.monotonic() < deadline and server.proc.poll() is None, server.output()[-3000:]
                await asyncio.sleep(0.05)
            # SERVING means able to answer: every model, at once.
            for i in (0, 150, 299):
                answer = await stub.GetMetrics(request(f"m{i}"), timeout=2)
                assert answer.metricValues[0].metricValue >= 1
    finally:
        assert server.terminate() == 0


async def test_error_messages_are_bounded(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.csv", 1200)
    models = "\n".join(f"  - {{name: model-{i}, capacityPerReplica: 50}}" for i in range(2000))
    path = tmp_path / "many.yaml"
    path.write_text(config_text(trace).split("models:")[0] + "models:\n" + models + "\n")
    server = start_serve(["--config", str(path)], tmp_path, timeout=120)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for bad in (request("nope"), request("model-1", minReplicas="9" * 1_000_000)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetMetrics(bad, timeout=10)
                assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
                details = err.value.details() or ""
                assert len(details) < 1000, details[:300]
            assert "and 1990 more" in details or "minReplicas" in details
    finally:
        assert server.terminate() == 0


async def test_rotated_certificate_is_served_without_a_restart(config_file: Path, tmp_path: Path) -> None:
    """cert-manager replaces tls.crt/tls.key in place: new connections get the new pair."""
    from tests.support.certs import make_pki

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = make_pki(tmp_path / "old", ca_name="old-ca"), make_pki(tmp_path / "new", ca_name="new-ca")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(old["server"].cert.read_bytes())
    key.write_bytes(old["server"].key.read_bytes())
    trusts_old = grpc.ssl_channel_credentials(old["ca"].cert.read_bytes())
    trusts_new = grpc.ssl_channel_credentials(new["ca"].cert.read_bytes())
    server = start_serve(["--config", str(config_file), "--tls-cert", str(cert), "--tls-key", str(key)],
                         tmp_path, credentials=trusts_old)

    async def answers(credentials: grpc.ChannelCredentials) -> bool:
        async with grpc.aio.secure_channel(server.address, credentials) as channel:
            try:
                await pb_grpc.ExternalScalerStub(channel).GetMetrics(request(), timeout=3)
                return True
            except grpc.aio.AioRpcError:
                return False

    try:
        assert await answers(trusts_old)
        assert not await answers(trusts_new)
        key.write_bytes(new["server"].key.read_bytes())  # the order a rotation may happen in
        cert.write_bytes(new["server"].cert.read_bytes())
        deadline = time.monotonic() + 10
        while not await answers(trusts_new):
            assert time.monotonic() < deadline, server.output()[-3000:]
            await asyncio.sleep(0.3)
        assert not await answers(trusts_old)
        assert "TLS certificate reloaded" in server.output()
    finally:
        assert server.terminate() == 0
