"""`prewarm serve` as a real process: config file, hot reload, SIGTERM, TLS/mTLS, bad flags."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.support.certs import make_pki
from tests.support.keda_client import KedaClient
from tests.support.process import ROOT, start_serve

pytestmark = pytest.mark.slow

TRACE_HEADER = "timestamp_utc,requests\n"


def write_trace(path: Path, per_bucket: int, *, days: int = 2, step_minutes: int = 10) -> Path:
    rows = [TRACE_HEADER]
    for i in range(days * 24 * 60 // step_minutes):
        minutes = i * step_minutes
        rows.append(f"2026-01-{1 + minutes // 1440:02d}T{minutes % 1440 // 60:02d}:{minutes % 60:02d}:00Z,{per_bucket}\n")
    path.write_text("".join(rows))
    return path


def config_text(trace: Path, *, max_replicas: int = 20) -> str:
    return f"""
replay: {{trace: {trace.name}}}
defaults: {{refreshInterval: 1s, staleAfter: 30s, forecast: false, history: 1d, step: 1m, fitWorkers: 1}}
models:
  - {{name: llama, capacityPerReplica: 50, maxReplicas: {max_replicas}}}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    trace = write_trace(tmp_path / "trace.csv", 1200)  # 120 requests/min
    path = tmp_path / "config.yaml"
    path.write_text(config_text(trace))
    return path


async def poll_until(address: str, predicate, *, timeout: float = 20.0, credentials=None, **client_kw):
    deadline = time.monotonic() + timeout
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    try:
        client = KedaClient(channel, "llama", **client_kw)
        while True:
            poll = await client.poll()
            if predicate(poll) or time.monotonic() > deadline:
                return poll
            await asyncio.sleep(0.3)
    finally:
        await channel.close()


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


async def test_serves_config_reloads_and_stops_cleanly(config_file: Path, tmp_path: Path) -> None:
    server = start_serve(["--config", str(config_file)], tmp_path)
    try:
        poll = await poll_until(server.address, lambda p: p.error is None)
        assert poll.values == [3.0], server.output()  # ceil(120 / 50)
        # hot reload: a valid change applies...
        config_file.write_text(config_text(config_file.parent / "trace.csv", max_replicas=2))
        poll = await poll_until(server.address, lambda p: p.values == [2.0])
        assert poll.values == [2.0], server.output()
        # ...an invalid one is rejected, counted, and the last good config stays
        config_file.write_text("models: [{name: llama, capacityPerReplica: -1}]\n")
        deadline = time.monotonic() + 15
        while "prewarm_config_reload_errors_total 1.0" not in metrics_text(server.metrics_port):
            assert time.monotonic() < deadline, metrics_text(server.metrics_port)
            await asyncio.sleep(0.3)
        assert (await poll_until(server.address, lambda p: True)).values == [2.0]
        assert "config reload rejected" in server.output()
        assert "models[0].capacityPerReplica: -1, must be > 0" in server.output()
        # SIGTERM with an open StreamIsActive: the stream ends with OK, the process exits 0
        channel = grpc.aio.insecure_channel(server.address)
        stream = KedaClient(channel, "llama").stub.StreamIsActive(KedaClient(channel, "llama").ref)
        assert (await stream.read()).result is True
        rc = await asyncio.to_thread(server.terminate)
        assert rc == 0, server.output()
        while (message := await stream.read()) is not grpc.aio.EOF:
            assert message.result is True
        assert await stream.code() == grpc.StatusCode.OK
        await channel.close()
    finally:
        server.kill()


async def test_tls_and_mtls(config_file: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ca = pki["ca"].cert.read_bytes()
    args = ["--config", str(config_file), "--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key)]
    tls = start_serve(args, tmp_path, credentials=grpc.ssl_channel_credentials(ca))
    try:
        poll = await poll_until(tls.address, lambda p: p.error is None, credentials=grpc.ssl_channel_credentials(ca))
        assert poll.values == [3.0]
    finally:
        assert tls.terminate() == 0
    client_creds = grpc.ssl_channel_credentials(ca, pki["client"].key.read_bytes(), pki["client"].cert.read_bytes())
    mtls = start_serve([*args, "--tls-client-ca", str(pki["ca"].cert)], tmp_path, credentials=client_creds)
    try:
        poll = await poll_until(mtls.address, lambda p: p.error is None, credentials=client_creds)
        assert poll.values == [3.0]
        refused = await poll_until(mtls.address, lambda p: True, credentials=grpc.ssl_channel_credentials(ca), timeout=0)
        assert refused.error == grpc.StatusCode.UNAVAILABLE  # no client certificate: handshake refused
        (tmp_path / "other").mkdir()
        other = make_pki(tmp_path / "other", ca_name="rogue-ca")
        rogue = grpc.ssl_channel_credentials(ca, other["client"].key.read_bytes(), other["client"].cert.read_bytes())
        assert (await poll_until(mtls.address, lambda p: True, credentials=rogue, timeout=0)).error == grpc.StatusCode.UNAVAILABLE
    finally:
        assert mtls.terminate() == 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scaler", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["serve", "--config", "/nonexistent/config.yaml"], "cannot read", id="missing-file"),
        pytest.param(["serve", "--demo", "--listen", "nonsense"], "--listen 'nonsense'", id="bad-listen"),
        pytest.param(["serve", "--demo", "--metrics-listen", "localhost:99999"], "--metrics-listen", id="bad-metrics-port"),
        pytest.param(["serve", "--demo", "--tls-cert", "x.pem"], "--tls-cert and --tls-key go together", id="half-tls"),
        pytest.param(["serve", "--demo", "--tls-cert", "/no/cert", "--tls-key", "/no/key"], "--tls-cert /no/cert", id="missing-cert"),
    ],
)
def test_bad_serve_flags_exit_2_naming_the_flag(args, needle) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_and_schema(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("prometheus: {url: 'http://p:9090'}\nmodels: [{name: a, capacityPerReplica: 4, bogus: 1}]\n")
    result = run_cli("check-config", str(good), "--print")
    assert result.returncode == 0 and "valid (1 model(s): a)" in result.stdout
    assert "models[0].bogus: unknown key, ignored" in result.stderr
    assert "refreshInterval: 15s" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: a\n    capacityPerReplica: [\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 1 and "invalid YAML" in result.stderr and "line" in result.stderr
    schema = json.loads(run_cli("config-schema").stdout)
    assert schema["title"] == "prewarm config.yaml" and "models" in schema["required"]
