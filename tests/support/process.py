"""Run `prewarm serve` as a real process and wait until its gRPC health check says SERVING; the
processes a command started, from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): state, ppid, ...; raises
    OSError when the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: pid -> command line."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry.name)[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if ppid == pid:
            out[int(entry.name)] = cmdline
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (exited, not yet reaped)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Processes started inside this block see SIGINT at its default action, as from a terminal.

    A shell starts a background job without job control (``nohup cmd &``, many CI runners) with
    SIGINT ignored. Children inherit that, and Python then installs no KeyboardInterrupt handler
    (it keeps a disposition its parent chose), so a test that sends SIGINT would wait for a run to
    end by itself. A handler set here is reset to the default in a child at exec.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_serve(args: list[str], tmp: Path, *, wait: bool = True, credentials: grpc.ChannelCredentials | None = None,
                timeout: float = 60.0) -> ServeProcess:
    grpc_port, metrics_port = free_port(), free_port()
    log = tmp / f"serve-{grpc_port}.log"
    cmd = [sys.executable, "-m", "scaler", "serve", *args, "--listen", f"127.0.0.1:{grpc_port}",
           "--metrics-listen", f"127.0.0.1:{metrics_port}", "--grace", "5"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    server = ServeProcess(proc, grpc_port, metrics_port, log)
    if wait:
        wait_serving(server, credentials=credentials, timeout=timeout)
    return server


def wait_serving(server: ServeProcess, *, credentials: grpc.ChannelCredentials | None = None,
                 timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"prewarm serve exited {server.proc.returncode}:\n{server.output()}")
        channel = (grpc.secure_channel(server.address, credentials) if credentials
                   else grpc.insecure_channel(server.address))
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        finally:
            channel.close()
        time.sleep(0.2)
    server.kill()
    raise AssertionError(f"prewarm serve not SERVING after {timeout}s:\n{server.output()}")
