"""A stand-in for vLLM's /metrics, driven by a real trace: exact vLLM names and labels.

Run as a process (stdlib only, by path): ``python tests/support/vllm_exporter.py SPEC_JSON``. It
binds one loopback port per simulated pod plus a control port and prints
``{"control": P, "pods": [P1, ...]}`` on stdout. Pods serve ``/metrics`` with ``model_name`` and
``engine`` labels, the vLLM V1 names (or, for a ``legacy`` model, the old
``vllm:gpu_cache_usage_perc`` and ``vllm:time_per_output_token_seconds``). The control port
serves ``GET /state`` (what is served now, JSON) and ``POST /control`` (``{"pin": {served:
concurrency or null}}`` pins a model's gauges; ``{"reset": true}`` restarts every counter at 0 as
a pod restart would).

The same functions give the backfilled history (``promenv.write_openmetrics``), so live data
continues the history: demand at time ``t`` is the trace's bucket ``((t + shift) mod span) // step``
(the ServeGen traces start at 1970-01-01T00:00Z = local midnight, so with a shift of whole days the
daily phase follows UTC). A session reads each trace ahead by ``ModelSpec.shift_seconds``
(:func:`live_shift`) so the hours it runs hold none of the trace's collection gaps.
Demand is concurrency (running + waiting); completions follow Little's law,
``completions/s = concurrency / latency``, and counters are exact integrals of that rate.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
QUEUE_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
"""vLLM's own bounds for ``vllm:request_queue_time_seconds`` (and the other request-time histograms)."""
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
PROMPT_TOKENS_PER_REQUEST = 480.0
GENERATION_TOKENS_PER_REQUEST = 210.0
LENGTH_FRACTION = 0.1
"""Share of completions with finished_reason="length" (the rest "stop")."""
TTFT_MEDIAN, ITL_MEDIAN = 0.2, 0.04


@dataclass(frozen=True)
class Trace:
    """Concurrency per trace bucket (scaled), repeating every ``len(values) * step`` seconds."""

    values: tuple[float, ...]
    step: int = 600
    shift: float = 0.0
    """Seconds the trace is read ahead of the clock (see :func:`live_shift`)."""
    cumulative: tuple[float, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        sums = [0.0]
        for v in self.values:
            sums.append(sums[-1] + v * self.step)
        object.__setattr__(self, "cumulative", tuple(sums))

    @property
    def span(self) -> int:
        return len(self.values) * self.step

    def index(self, t: float) -> int:
        return int(((t + self.shift) % self.span) // self.step)

    def at(self, t: float) -> float:
        return self.values[self.index(t)]

    def is_gap(self, t: float) -> bool:
        """Trace buckets of exactly 0 are collection gaps (ServeGen: every client 0 at once)."""
        return self.at(t) == 0.0

    def integral(self, t: float) -> float:
        """Integral of concurrency from the trace's start to ``t`` (concurrency x seconds), exact:
        differences of it are what was served between two times."""
        cycles, rest = divmod(t + self.shift, self.span)
        i = int(rest // self.step)
        return cycles * self.cumulative[-1] + self.cumulative[i] + (rest - i * self.step) * self.values[i]


def live_shift(trace: Trace, *, start: float, end: float) -> float:
    """How far ahead to read ``trace`` so that [start, end] holds none of its collection gaps.

    The traces repeat along the wall clock, so without a shift a live test that happens to run
    in a gap (m-mid: 84 of 2,016 buckets, up to 230 minutes in a row) waits for requests that
    never come. Whole days first (the daily phase stays UTC's), else whole buckets; 0 when no
    shift avoids every gap (a trace that is mostly gaps).
    """
    times = [*range(int(start), int(end), trace.step), end]  # one time in every bucket touched
    buckets = len(trace.values)
    per_day = max(1, 86400 // trace.step)
    for k in [*range(0, buckets, per_day), *range(buckets)]:
        shifted = Trace(trace.values, trace.step, shift=float(k * trace.step))
        if not any(shifted.is_gap(t) for t in times):
            return shifted.shift
    return 0.0


def load_trace(path: str, *, mean_concurrency: float, shift: float = 0.0) -> Trace:
    """A trace CSV (``timestamp_utc,requests,...``) scaled so its mean is ``mean_concurrency``,
    read ``shift`` seconds ahead of the clock."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    requests = [float(r["requests"]) for r in rows]
    stamps = [_parse_utc(r["timestamp_utc"]) for r in rows[:2]]
    mean = sum(requests) / len(requests)
    return Trace(tuple(mean_concurrency * r / mean for r in requests), step=int(stamps[1] - stamps[0]),
                 shift=shift)


def _parse_utc(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class ModelSpec:
    served: str
    trace_path: str
    mean_concurrency: float
    latency_seconds: float = 4.0
    """Mean request latency: completions/s = concurrency / latency (Little's law)."""
    max_running: int = 16
    """Per engine: requests above this wait (vLLM's max_num_seqs)."""
    legacy: bool = False
    """Export the pre-0.12 names (gpu_cache_usage_perc, time_per_output_token_seconds)."""
    shift_seconds: float = 0.0
    """Read the trace this far ahead of the clock (:func:`live_shift`)."""

    def trace(self) -> Trace:
        """The trace as served: scaled and shifted."""
        return load_trace(self.trace_path, mean_concurrency=self.mean_concurrency, shift=self.shift_seconds)


@dataclass(frozen=True)
class PodSpec:
    served: str
    engines: int = 1
    """Data-parallel engines in this pod (label ``engine``="0".."n-1")."""
    queue_median: float = 0.5
    """Median wait in the queue (s): the share of requests within a bound is ``cdf(bound, median)``."""
    go_bounds: bool = False
    """Write bucket bounds as Go clients do (``le="1"``) instead of vLLM's Python client (``"1.0"``)."""


@dataclass(frozen=True)
class ExporterSpec:
    models: tuple[ModelSpec, ...]
    pods: tuple[PodSpec, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ExporterSpec:
        raw = json.loads(text)
        return cls(tuple(ModelSpec(**m) for m in raw["models"]),
                   tuple(PodSpec(**p) for p in raw["pods"]))


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` integers that sum to it exactly (first ones get +1)."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def engine_gauges(concurrency: float, engines: int, max_running: int) -> list[tuple[int, int]]:
    """(running, waiting) per engine; the sum over engines is round(concurrency) exactly."""
    shares = split(max(0, round(concurrency)), engines)
    return [(min(s, max_running), max(0, s - max_running)) for s in shares]


def cdf(bound: float, median: float) -> float:
    """Share of requests at or below ``bound``: a log-logistic latency distribution (shape 3)."""
    return 1.0 / (1.0 + (median / bound) ** 3)


class Exporter:
    """What every pod serves at a given time; ``pins`` and ``counter_start`` set by control."""

    def __init__(self, spec: ExporterSpec, *, now: float) -> None:
        self.spec = spec
        self.models = {m.served: m for m in spec.models}
        self.traces = {m.served: m.trace() for m in spec.models}
        self.engines = {m.served: sum(p.engines for p in spec.pods if p.served == m.served)
                        for m in spec.models}
        self.pins: dict[str, float] = {}
        self.counter_start = now
        self.lock = threading.Lock()

    def concurrency(self, served: str, t: float) -> float:
        with self.lock:
            pinned = self.pins.get(served)
        return pinned if pinned is not None else self.traces[served].at(t)

    def state(self, t: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for served, m in self.models.items():
            gauges = engine_gauges(self.concurrency(served, t), self.engines[served], m.max_running)
            running, waiting = sum(r for r, _ in gauges), sum(w for _, w in gauges)
            out[served] = {"concurrency": running + waiting, "running": running, "waiting": waiting,
                           "engines": self.engines[served],
                           "pods": sum(1 for p in self.spec.pods if p.served == served)}
        return out

    def render(self, pod_index: int, t: float) -> str:
        pod = self.spec.pods[pod_index]
        m = self.models[pod.served]
        first = sum(p.engines for p in self.spec.pods[:pod_index] if p.served == pod.served)
        total = self.engines[pod.served]
        gauges = engine_gauges(self.concurrency(pod.served, t), total, m.max_running)
        trace = self.traces[pod.served]
        with self.lock:
            since = self.counter_start
        # Completions over [since, t], this engine's share: integral(concurrency) / latency.
        done = (trace.integral(t) - trace.integral(since)) / m.latency_seconds / total
        lines: list[str] = []
        for k in range(pod.engines):
            running, waiting = gauges[first + k]
            labels = f'engine="{k}",model_name="{_escape(pod.served)}"'
            lines += _engine_lines(m, pod, labels, running, waiting, done)
        return _group(lines)


def _engine_lines(m: ModelSpec, pod: PodSpec, labels: str, running: int, waiting: int,
                  done: float) -> list[str]:
    kv_name = "vllm:gpu_cache_usage_perc" if m.legacy else "vllm:kv_cache_usage_perc"
    itl_name = ("vllm:time_per_output_token_seconds" if m.legacy
                else "vllm:inter_token_latency_seconds")
    out = [
        f"gauge vllm:num_requests_running{{{labels}}} {running}",
        f"gauge vllm:num_requests_waiting{{{labels}}} {waiting}",
        f"gauge {kv_name}{{{labels}}} {min(1.0, 0.9 * running / m.max_running):.6f}",
        f'counter vllm:request_success_total{{{labels},finished_reason="stop"}} '
        f"{done * (1 - LENGTH_FRACTION):.6f}",
        f'counter vllm:request_success_total{{{labels},finished_reason="length"}} '
        f"{done * LENGTH_FRACTION:.6f}",
        f"counter vllm:prompt_tokens_total{{{labels}}} {done * PROMPT_TOKENS_PER_REQUEST:.6f}",
        f"counter vllm:generation_tokens_total{{{labels}}} {done * GENERATION_TOKENS_PER_REQUEST:.6f}",
    ]
    histograms = (("vllm:time_to_first_token_seconds", TTFT_BUCKETS, TTFT_MEDIAN, done),
                  ("vllm:request_queue_time_seconds", QUEUE_BUCKETS, pod.queue_median, done),
                  (itl_name, ITL_BUCKETS, ITL_MEDIAN, done * GENERATION_TOKENS_PER_REQUEST))
    for name, buckets, median, count in histograms:
        out += _histogram(name, labels, buckets, median, count, go_bounds=pod.go_bounds)
    return out


def _histogram(name: str, labels: str, buckets: Sequence[float], median: float,
               count: float, *, go_bounds: bool) -> list[str]:
    # Python's client writes 1.0 as "1.0", Go's as "1"; Prometheus 2.x stores either verbatim.
    spell = "{:g}".format if go_bounds else str
    out = [f'histogram {name}_bucket{{{labels},le="{spell(b)}"}} {count * cdf(b, median):.6f}'
           for b in buckets]
    out.append(f'histogram {name}_bucket{{{labels},le="+Inf"}} {count:.6f}')
    out.append(f"histogram {name}_count{{{labels}}} {count:.6f}")
    out.append(f"histogram {name}_sum{{{labels}}} {count * median * 1.2:.6f}")
    return out


def _group(lines: list[str]) -> str:
    """Text exposition 0.0.4: samples grouped per family under one HELP/TYPE."""
    families: dict[str, tuple[str, list[str]]] = {}
    for line in lines:
        kind, sample = line.split(" ", 1)
        name = sample.split("{", 1)[0]
        family = _family(name, kind)
        families.setdefault(family, (kind, []))[1].append(sample)
    text = []
    for family, (kind, samples) in families.items():
        text.append(f"# HELP {family} vLLM stand-in: {family}.")
        text.append(f"# TYPE {family} {kind}")
        text += samples
    return "\n".join(text) + "\n"


def _family(name: str, kind: str) -> str:
    if kind == "histogram":
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
    return name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# --- process ---------------------------------------------------------------------------------------


def _handler(exporter: Exporter, pod_index: int | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if pod_index is not None and self.path.startswith("/metrics"):
                self._send(200, exporter.render(pod_index, time.time()),
                           "text/plain; version=0.0.4; charset=utf-8")
            elif pod_index is None and self.path == "/state":
                self._send(200, json.dumps(exporter.state(time.time())), "application/json")
            else:
                self._send(404, "not found\n", "text/plain")

        def do_POST(self) -> None:
            if pod_index is not None or self.path != "/control":
                self._send(404, "not found\n", "text/plain")
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            with exporter.lock:
                for served, value in body.get("pin", {}).items():
                    if value is None:
                        exporter.pins.pop(served, None)
                    else:
                        exporter.pins[served] = float(value)
                if body.get("reset"):
                    exporter.counter_start = time.time()
            self._send(200, json.dumps(exporter.state(time.time())), "application/json")

    return Handler


def main(argv: Sequence[str]) -> int:
    spec = ExporterSpec.from_json(argv[1] if len(argv) > 1 else sys.stdin.readline())
    exporter = Exporter(spec, now=time.time())
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(exporter, None))]
    servers += [ThreadingHTTPServer(("127.0.0.1", 0), _handler(exporter, i))
                for i in range(len(spec.pods))]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
               for s in servers]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ports = [s.server_address[1] for s in servers]
    print(json.dumps({"control": ports[0], "pods": ports[1:]}), flush=True)
    while not stop.wait(0.2):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
