"""KEDA interop: an independent grpc-go client against the real `prewarm serve --demo`.

The client (tests/interop/kedaclient, built by tests/interop/build.sh from
proto/externalscaler.proto with Debian's grpc-go) does what KEDA v2.20 does: GetMetricSpec,
GetMetrics per spec, IsActive, both streams, KEDA's value rules and the HPA AverageValue math.
It prints one JSON object per line; these tests check the answers and the status codes for
missing, unknown and hostile model names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = [pytest.mark.interop, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = Path(__file__).resolve().parent / "build.sh"
MODEL = "demo"
SPEC = {"metricName": "prewarm-demo", "targetSize": 1, "targetSizeFloat": 1.0, "target": 1.0}
RPCS = {"GetMetricSpec", "GetMetrics", "IsActive", "StreamIsActive", "StreamMetricSpec"}
HOSTILE = {
    "long",
    "promql-injection",
    "promql-regex",
    "newline",
    "unicode",
    "nul",
    "path-traversal",
    "path-traversal-deep",
}
READY_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 15.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def kedaclient() -> Path:
    """Path of the Go client; skipped only when Go is absent outside CI."""
    if shutil.which("go") is None and not _in_ci():
        pytest.skip("go toolchain not installed (CI=true makes this a failure)")
    proc = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stderr}\n{proc.stdout}"
    binary = Path(proc.stdout.strip().splitlines()[-1])
    assert binary.is_file() and os.access(binary, os.X_OK), binary
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    addr: str
    log: Path
    creds: grpc.ChannelCredentials | None = field(default=None)

    def tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def health(self, timeout_s: float = 2.0) -> int:
        """grpc.health.v1 Check(service="") status, or -1 when it cannot answer."""
        channel = (
            grpc.secure_channel(self.addr, self.creds) if self.creds is not None else grpc.insecure_channel(self.addr)
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
            except grpc.RpcError:
                return -1
            status: int = resp.status
            return status

    def stop(self) -> int | None:
        """SIGTERM; the exit code, or None if it did not exit within SHUTDOWN_TIMEOUT_S."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _start_server(log_dir: Path, extra: Sequence[str] = (), creds: grpc.ChannelCredentials | None = None) -> Server:
    port, metrics_port = _free_port(), _free_port()
    log = log_dir / f"server-{port}.log"
    cmd = [
        sys.executable, "-m", "scaler", "serve", "--demo",
        "--listen", f"127.0.0.1:{port}",
        "--metrics-listen", f"127.0.0.1:{metrics_port}", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    server = Server(proc, f"127.0.0.1:{port}", log, creds)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} before ready:\n{server.tail()}")
        if server.health() == health_pb2.HealthCheckResponse.SERVING:
            return server
        time.sleep(0.2)
    server.kill()
    pytest.fail(f"server not SERVING within {READY_TIMEOUT_S} s:\n{server.tail()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = _start_server(tmp_path_factory.mktemp("interop"))
    try:
        yield srv
    finally:
        if srv.stop() is None:
            srv.kill()


@dataclass
class Run:
    code: int
    lines: list[dict[str, Any]]
    stderr: str

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("kind") == kind]

    def why(self) -> str:
        stdout = "\n".join(json.dumps(line) for line in self.lines)
        return f"exit {self.code}\nstdout:\n{stdout}\nstderr:\n{self.stderr}"


def _run_client(binary: Path, server: Server, *args: str, timeout_s: float = 60) -> Run:
    proc = subprocess.run(
        [str(binary), "-addr", server.addr, "-model", MODEL, "-name", "interop-so",
         "-namespace", "interop", "-metadata", "anotherUnknownKey=tolerate-me", *args],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return Run(proc.returncode, lines, proc.stderr)


def _check_poll(line: dict[str, Any]) -> None:
    assert line["metricName"] == SPEC["metricName"]
    assert line["hpaMetricName"] == f"s0-{SPEC['metricName']}"
    # target 1 in both the int64 (KEDA < 2.17) and the double field.
    assert (line["targetSize"], line["targetSizeFloat"], line["target"]) == (1, 1.0, 1.0)
    assert line["valueCount"] == 1, "return exactly one value: the HPA sums them"
    raw_int, raw_float, value = line["metricValue"], line["metricValueFloat"], line["value"]
    assert raw_int >= 0 and float(raw_int) == raw_float, "int64 and double values disagree"
    assert value == raw_int and float(value).is_integer()
    assert line["desired"] == value, "target 1, value N must mean N replicas"
    assert line["active"] == (value > 0)
    assert line["problems"] == []


def test_poll_cycle_and_streams(kedaclient: Path, server: Server) -> None:
    run = _run_client(kedaclient, server, "-polls", "3", "-interval", "300ms")
    assert run.code == 0, run.why()
    assert run.kind("error") == [], run.why()

    specs = run.kind("spec")
    assert [s["poll"] for s in specs] == [1, 2, 3], run.why()
    assert all(s["specs"] == [SPEC] for s in specs), run.why()

    polls = run.kind("poll")
    assert [p["poll"] for p in polls] == [1, 2, 3], run.why()
    for poll in polls:
        _check_poll(poll)

    streams = {s["rpc"]: s for s in run.kind("stream")}
    assert set(streams) == {"StreamIsActive", "StreamMetricSpec"}, run.why()
    # The stream's first message is the current state: what IsActive says around it.
    active = streams["StreamIsActive"]
    assert isinstance(active["unaryBefore"], bool), run.why()
    assert active["messages"][0] in (active["unaryBefore"], active["unaryAfter"]), run.why()
    spec = streams["StreamMetricSpec"]
    assert spec["messages"][0] == spec["unaryBefore"] == spec["unaryAfter"] == [SPEC], run.why()


def test_status_codes_and_still_serving(kedaclient: Path, server: Server) -> None:
    run = _run_client(kedaclient, server, "-mode", "codes")
    assert run.code in (0, 1), run.why()  # 2 would be a transport error
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for line in run.kind("code"):
        by_case.setdefault(line["case"], {})[line["rpc"]] = line
    assert set(by_case) == {"missing", "empty", "unknown", *HOSTILE}, run.why()
    assert all(set(rpcs) == RPCS for rpcs in by_case.values()), run.why()

    wrong = []
    for case, rpcs in sorted(by_case.items()):
        for rpc, line in sorted(rpcs.items()):
            code, msg = line["code"], line["message"]
            if case in ("missing", "empty"):
                ok = code == "InvalidArgument"
            elif case == "unknown":
                ok = code == "NotFound" and MODEL in msg
            else:
                ok = code in ("InvalidArgument", "NotFound")
            if not ok:
                wrong.append(f"{case}/{rpc}: {code} {msg!r}")
    assert not wrong, "wrong status codes:\n" + "\n".join(wrong)
    assert run.code == 0, run.why()

    after = run.kind("after")
    assert after and after[0]["result"] == [SPEC], run.why()
    assert server.proc.poll() is None, server.tail()
    assert server.health() == health_pb2.HealthCheckResponse.SERVING
    again = _run_client(kedaclient, server, "-mode", "poll", "-polls", "1")
    assert again.code == 0, again.why()
    _check_poll(again.kind("poll")[0])


def test_sigterm_with_open_stream_exits_zero(kedaclient: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """KEDA holds StreamIsActive open for good: shutdown must not wait on it."""
    srv = _start_server(tmp_path_factory.mktemp("interop-sigterm"))
    holder = None
    try:
        run = _run_client(kedaclient, srv, "-polls", "1")
        assert run.code == 0, run.why()
        holder = subprocess.Popen(
            [str(kedaclient), "-addr", srv.addr, "-model", MODEL, "-mode", "streams",
             "-stream-messages", "1000", "-stream-wait", "120s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert holder.stdout is not None
        time.sleep(1.0)  # the stream is open and has sent its first message
        assert holder.poll() is None, "stream closed early"
        started = time.monotonic()
        code = srv.stop()
        assert code == 0, (
            f"exit {code} after {time.monotonic() - started:.1f} s "
            f"(None = still running after {SHUTDOWN_TIMEOUT_S} s):\n{srv.tail()}"
        )
    finally:
        srv.kill()
        if holder is not None:
            holder.kill()
            holder.communicate(timeout=10)


def _write_pki(d: Path) -> dict[str, Path]:
    """A throwaway CA, a server cert for 127.0.0.1 and a client cert (PEM files)."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
             signer: ec.EllipticCurvePrivateKey) -> x509.Certificate:  # fmt: skip
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if issuer is not None:
            server = cn == "server"
            eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([eku]), False)
            if server:
                san = [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
                b = b.add_extension(x509.SubjectAlternativeName(san), False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("interop-ca", ca_key, None, ca_key)
    files = {"ca": d / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[who] = d / f"{who}.pem"
        files[who].write_bytes(cert(who, key, ca, ca_key).public_bytes(serialization.Encoding.PEM))
        files[f"{who}-key"] = d / f"{who}.key"
        files[f"{who}-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


def test_mtls_like_keda(kedaclient: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """KEDA's TLS: caCert + tlsClientCert/tlsClientKey, server name = host of scalerAddress."""
    d = tmp_path_factory.mktemp("interop-tls")
    pki = _write_pki(d)
    creds = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(), pki["client-key"].read_bytes(), pki["client"].read_bytes()
    )
    tls_flags = ["--tls-cert", str(pki["server"]), "--tls-key", str(pki["server-key"]),
                 "--tls-client-ca", str(pki["ca"])]  # fmt: skip
    srv = _start_server(d, tls_flags, creds)
    try:
        ca = ("-ca", str(pki["ca"]))
        cert = ("-cert", str(pki["client"]))
        key = ("-key", str(pki["client-key"]))
        ok = _run_client(kedaclient, srv, "-tls", *ca, *cert, *key, "-polls", "1")
        assert ok.code == 0, ok.why()
        _check_poll(ok.kind("poll")[0])
        assert {s["rpc"] for s in ok.kind("stream")} == {"StreamIsActive", "StreamMetricSpec"}

        # TLS is on because caCert is set (KEDA's rule), but no client certificate: refused.
        no_client_cert = _run_client(kedaclient, srv, "-tls", *ca, "-polls", "1")
        assert no_client_cert.code != 0 and not no_client_cert.kind("poll"), no_client_cert.why()
        wrong_name = _run_client(kedaclient, srv, *ca, *cert, *key, "-server-name", "wrong.example",
                                 "-polls", "1")  # fmt: skip
        assert wrong_name.code != 0 and not wrong_name.kind("poll"), wrong_name.why()
        assert srv.stop() == 0, srv.tail()
    finally:
        srv.kill()
