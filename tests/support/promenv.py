"""A real Prometheus for tests: days of vLLM-shaped history backfilled with promtool, then live
scrapes of the trace-driven exporter (``vllm_exporter.py``) on loopback ports.

Order matters: the exporter starts first (its ports go into the scrape config and into the
backfilled ``instance`` labels, so history and live series are the same series), then the
history is written as OpenMetrics and turned into TSDB blocks BEFORE the server starts, ending
a few minutes before "now" so it never overlaps the live head block.
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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.support.vllm_exporter import ExporterSpec, engine_gauges

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = Path(__file__).with_name("vllm_exporter.py")
ENV_SCRIPT = ROOT / "scripts" / "prometheus-env.sh"
JOB = "vllm"
COUNTER_RESET_AGO = 3 * 86400
"""The backfilled history has a pod restart (every counter back to 0) this long before its end."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def binaries() -> tuple[str, str] | None:
    """(prometheus, promtool) paths, or None when either is missing."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return (prometheus, promtool) if prometheus and promtool else None


def install() -> tuple[str, str] | None:
    """Run scripts/prometheus-env.sh (apt-get install when missing); the binaries after it."""
    bash = shutil.which("bash") or "/bin/bash"
    try:
        subprocess.run([bash, str(ENV_SCRIPT), "install"], check=False, timeout=600)
    except OSError as exc:
        print(f"cannot run {ENV_SCRIPT}: {exc}", file=sys.stderr)
    return binaries()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true (the one kind of waiting tests do: for a server)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_json(url: str, data: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


# --- exporter ---------------------------------------------------------------------------------------


@dataclass
class ExporterProcess:
    spec: ExporterSpec
    process: subprocess.Popen[str]
    control_port: int
    pod_ports: list[int]

    @classmethod
    def start(cls, spec: ExporterSpec) -> ExporterProcess:
        process = subprocess.Popen(
            [sys.executable, str(EXPORTER), spec.to_json()],
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=5)
            raise RuntimeError(f"exporter exited with {process.returncode} before reporting ports")
        ports = json.loads(line)
        return cls(spec, process, ports["control"], ports["pods"])

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.pod_ports]

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json(f"http://127.0.0.1:{self.control_port}/state")
        return result

    def control(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = http_json(f"http://127.0.0.1:{self.control_port}/control", body)
        return result

    def stop(self) -> None:
        _terminate(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


# --- backfill ----------------------------------------------------------------------------------------


def write_openmetrics(
    out: IO[str], spec: ExporterSpec, targets: Sequence[str], *, start: float, end: float,
    step: int = 60,
) -> int:
    """vLLM gauges and the success counter for every pod's engines over [start, end); returns
    the sample count.

    Trace buckets of 0 are collection gaps (no samples: they read as NaN once longer than the
    5-minute lookback); every counter restarts at 0 ``COUNTER_RESET_AGO`` before ``end``.
    """
    traces = {m.served: m.trace() for m in spec.models}
    models = {m.served: m for m in spec.models}
    engines = {s: sum(p.engines for p in spec.pods if p.served == s) for s in traces}
    times = [start + k * step for k in range(int((end - start) // step))]
    reset = end - COUNTER_RESET_AGO
    rows: dict[str, list[str]] = {"running": [], "waiting": [], "success": []}
    for index, (pod, target) in enumerate(zip(spec.pods, targets, strict=True)):
        trace, m = traces[pod.served], models[pod.served]
        first = sum(p.engines for p in spec.pods[:index] if p.served == pod.served)
        for k in range(pod.engines):
            labels = (f'engine="{k}",instance="{target}",job="{JOB}",'
                      f'model_name="{_escape(pod.served)}"')
            for t in times:
                if trace.is_gap(t):
                    continue
                running, waiting = engine_gauges(trace.at(t), engines[pod.served],
                                                 m.max_running)[first + k]
                since = start if t < reset else reset
                done = (trace.integral(t) - trace.integral(since)) / m.latency_seconds
                ts = f"{t:.0f}"
                rows["running"].append(f"vllm:num_requests_running{{{labels}}} {running} {ts}")
                rows["waiting"].append(f"vllm:num_requests_waiting{{{labels}}} {waiting} {ts}")
                rows["success"].append(
                    f'vllm:request_success_total{{{labels},finished_reason="stop"}} '
                    f"{done / engines[pod.served]:.4f} {ts}")
    families = (("vllm:num_requests_running", "gauge", "running"),
                ("vllm:num_requests_waiting", "gauge", "waiting"),
                ("vllm:request_success", "counter", "success"))
    for family, kind, key in families:
        out.write(f"# TYPE {family} {kind}\n")
        out.write("\n".join(rows[key]))
        out.write("\n")
    out.write("# EOF\n")
    return sum(len(v) for v in rows.values())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def create_blocks(promtool: str, openmetrics: Path, data_dir: Path) -> None:
    # One block per 15 days instead of one per 2 hours: ~20x faster, same data.
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=360h",
         "--quiet", str(openmetrics), str(data_dir)],
        check=True, capture_output=True, timeout=300)


# --- prometheus --------------------------------------------------------------------------------------


@dataclass
class PrometheusServer:
    """One real Prometheus on a loopback port; stop() and start() keep port and data."""

    binary: str
    directory: Path
    targets: Sequence[str]
    port: int = field(default_factory=free_port)
    scrape_interval: str = "1s"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def write_config(self) -> Path:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": list(self.targets)}]}],
        }
        path = self.directory / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def start(self, *, timeout: float = 30.0) -> None:
        assert self.process is None, "already running"
        config = self.write_config()
        with (self.directory / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir}",
                 "--storage.tsdb.retention.time=90d", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ready, timeout=timeout, what=f"prometheus ready on {self.url}")

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)
            self.process = None

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "prometheus.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql, **({"time": repr(at)} if at is not None else {})}
        answer = http_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_scraped(self, *, timeout: float = 30.0) -> None:
        """Until every target was scraped successfully at least once (~6 s after a start)."""
        want = len(self.targets)

        def all_up() -> bool:
            up = self.query(f'up{{job="{JOB}"}} == 1')
            return len(up) == want

        wait_for(all_up, timeout=timeout, what="the first scrape of every exporter pod", interval=0.2)


@dataclass
class PromEnv:
    """The session's Prometheus + exporter; ``history_start``/``history_end`` bound the backfill."""

    prometheus: PrometheusServer
    exporter: ExporterProcess
    promtool: str
    history_start: float
    history_end: float
    setup_seconds: dict[str, float]


def start_env(
    spec: ExporterSpec, directory: Path, *, prometheus: str, promtool: str,
    history_days: float = 15.0, step: int = 60,
) -> Iterator[PromEnv]:
    """Generator for a session fixture: exporter, backfill, Prometheus; torn down after yield."""
    timings: dict[str, float] = {}
    began = time.monotonic()
    exporter = ExporterProcess.start(spec)
    server: PrometheusServer | None = None
    try:
        end = (time.time() // step) * step - 5 * step  # minutes before "now": no overlap
        start = end - history_days * 86400
        openmetrics = directory / "history.om"
        with openmetrics.open("w") as f:
            write_openmetrics(f, spec, exporter.targets, start=start, end=end, step=step)
        timings["write_openmetrics"] = time.monotonic() - began
        server = PrometheusServer(prometheus, directory, exporter.targets)
        mark = time.monotonic()
        create_blocks(promtool, openmetrics, server.data_dir)
        openmetrics.unlink()
        timings["promtool_backfill"] = time.monotonic() - mark
        mark = time.monotonic()
        server.start()
        server.wait_scraped()
        timings["prometheus_first_scrape"] = time.monotonic() - mark
        yield PromEnv(server, exporter, promtool, start, end, timings)
    finally:
        if server is not None:
            server.stop()
        exporter.stop()
