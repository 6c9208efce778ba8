"""The fluid FIFO cluster and KEDA's control loop of docs/BACKTEST.md, one minute per step.

Per minute ``t`` (``R`` = ready replicas, ``c`` = requests per replica per minute)::

    q(t)    = max(0, q(t-1) + a(t) - c R(t))                       backlog, old work first
    late(t) = max(0, a(t) - max(0, c R(t) - q(t-1)))               this minute's arrivals not served in it

E.g. c = 100, R = 2, q(t-1) = 50, a(t) = 180: 150 of the 200 served this minute go to this minute's
arrivals, so 30 are late and q(t) = 30. A replica ordered at minute t is billed from t and serves from
t + cold start (+ node provisioning when no GPU node is free); removing one is immediate, a
starting one first (as a ReplicaSet does). Every ``--polling-interval`` a policy's metric goes
through the HPA rules (:class:`Hpa`) and the Deployment is scaled to the result.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from scaler.backtest.scenario import MINUTE, Scenario
from scaler.core.record import record

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_EPSILON = 1e-9
NODE_IDLE_SECONDS = 600.0
"""A GPU node freed by a removed replica stays this long (cluster autoscaler's default
scale-down-unneeded-time) and is reused without provisioning."""


@dataclass(frozen=True)
class ClusterSpec:
    """How replicas come and go; times in seconds."""

    cold_start_s: tuple[float, float] = (600.0, 600.0)
    """Pod start to serving, uniform in [lo, hi] per replica (lo == hi: fixed)."""
    node_provision_s: float = 0.0
    """Added before the pod starts when no GPU node is free (0: nodes are always there)."""
    gpus_per_replica: int = 1
    seed: int = 0
    """Seed of the cold-start draws (a range only): every policy sees the same sequence."""

    def __post_init__(self) -> None:
        lo, hi = self.cold_start_s
        if not 0 <= lo <= hi:
            raise ValueError(f"cold start range {lo:g}s..{hi:g}s: need 0 <= lo <= hi")
        if self.node_provision_s < 0 or self.gpus_per_replica < 1:
            raise ValueError("node provisioning must be >= 0 and gpus per replica >= 1")

    @property
    def cold_start_p90_s(self) -> float:
        """What the scaler would learn as the cold start (p90 of the draws)."""
        lo, hi = self.cold_start_s
        return lo + 0.9 * (hi - lo)


@dataclass(frozen=True)
class ControlSpec:
    """KEDA + HPA settings every policy goes through."""

    polling_s: float = 30.0
    tolerance: float = 0.0
    scale_down_window_s: float = 300.0
    min_replicas: int = 1
    max_replicas: int = 40
    cooldown_s: float = 300.0
    """KEDA cooldownPeriod: scale to zero after this long inactive (min_replicas 0 only)."""

    def __post_init__(self) -> None:
        if self.polling_s <= 0 or self.tolerance < 0 or self.scale_down_window_s < 0:
            raise ValueError("polling > 0, tolerance >= 0 and scale-down window >= 0 required")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(f"replicas bounds [{self.min_replicas}, {self.max_replicas}] invalid")

    @property
    def every_minutes(self) -> int:
        """A decision every this many minutes (30 s polling at 1-minute steps: every minute)."""
        return max(1, math.ceil(self.polling_s / MINUTE - _EPSILON))


@record
class Metric:
    """What a policy tells KEDA at one poll: one AverageValue metric and IsActive."""

    value: float
    """Metric total (e.g. waiting requests, or desired replicas with target 1)."""
    target: float
    """AverageValue target per replica (> 0)."""
    active: bool
    hold_current: bool = False
    """Keep at least the current count (reactive-queue while requests wait)."""
    prewarm: int = 0
    """GPU nodes to hold ready beyond the replicas (balloon pods), in replicas."""


@record
class View:
    """What a policy may see when deciding at minute ``t``: only minutes before ``t``."""

    t: int
    now: float
    """Unix seconds of the start of minute ``t``."""
    arrivals_prev: float
    """a(t-1), requests (0 at t = 0)."""
    queue_prev: float
    """q(t-1), requests waiting."""
    observed_prev: bool
    """False when minute t-1 had no data in the trace (a scaler would have no sample)."""
    replicas: int
    """Current Deployment replicas (ordered, ready or not)."""
    late_prev: float = 0.0
    """Requests of minute t-1 not served in it (what vLLM's queue-time histogram shows)."""


class Controller(Protocol):
    """One policy at one knob setting, for one run (may keep state between polls)."""

    def metric(self, view: View) -> Metric: ...


def hpa_desired(current: int, value: float, target: float, *, tolerance: float) -> int:
    """Kubernetes HPA, AverageValue: ceil(value / target), or current within the tolerance band."""
    if current > 0 and abs(value / (target * current) - 1.0) <= tolerance:
        return current
    return max(0, math.ceil(value / target - 1e-6))


class Hpa:
    """KEDA activation + HPA: tolerance, unlimited scale-up, scale-down stabilization, clamp."""

    def __init__(self, control: ControlSpec) -> None:
        self.control = control
        self.recent: deque[tuple[float, int]] = deque()
        self.last_active = -math.inf

    def apply(self, metric: Metric, current: int, now: float) -> int:
        c = self.control
        if metric.active:
            self.last_active = now
        if current == 0:  # the HPA is off at zero: only IsActive wakes the Deployment
            return max(c.min_replicas, 1) if metric.active else 0
        if c.min_replicas == 0 and now - self.last_active >= c.cooldown_s:
            self.recent.clear()
            return 0
        desired = hpa_desired(current, metric.value, metric.target, tolerance=c.tolerance)
        if metric.hold_current:
            desired = max(desired, current)
        return self._stabilize(desired, now)

    def _stabilize(self, desired: int, now: float) -> int:
        """Highest recommendation within the window, clamped to [max(min, 1), max].

        ``recent`` keeps only recommendations higher than every later one (a newer, higher or
        equal one outlives them in the window), so it falls from old to new and its first is
        the highest."""
        c = self.control
        while self.recent and self.recent[0][0] <= now - c.scale_down_window_s:
            self.recent.popleft()
        while self.recent and self.recent[-1][1] <= desired:
            self.recent.pop()
        self.recent.append((now, desired))
        return min(max(self.recent[0][1], c.min_replicas, 1), c.max_replicas)


class Cluster:
    """Replicas and GPU nodes in whole minutes; billing counts replicas and balloon-held nodes."""

    def __init__(self, spec: ClusterSpec, *, ready: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        lo, hi = spec.cold_start_s
        self._fixed = _minutes(lo) if lo == hi else None
        self.node_minutes = _minutes(spec.node_provision_s)
        self.ready = ready
        """Replicas serving; a run starts with minReplicas already up (the Deployment exists)."""
        self.pending: list[tuple[int, int]] = []
        """(serving minute, node-ready minute) of each starting replica, oldest first."""
        self.free_nodes: list[list[float]] = []
        """[available-from minute, expires-at minute] of GPU nodes holding no replica."""
        self.balloons = 0
        self._in_order = self._fixed is not None and self.node_minutes == 0
        """Starting replicas become ready in the order they were ordered (fast path)."""

    @property
    def count(self) -> int:
        return self.ready + len(self.pending)

    def scale_to(self, n: int, t: int) -> None:
        while self.count > n:
            self._remove(t)
        while self.count < n:
            node = self._take_node(t)
            self.pending.append((max(node, t) + self._cold_minutes(), node))

    def set_balloons(self, n: int, t: int) -> None:
        """Hold ``n`` spare GPU nodes (provisioning new ones); no-op without node provisioning."""
        self.balloons = n if self.node_minutes > 0 else 0
        while len(self.free_nodes) < self.balloons:
            self.free_nodes.append([t + self.node_minutes, math.inf])

    def tick(self, t: int) -> tuple[int, int]:
        """Replicas serving in minute ``t`` and billed replicas (+ balloon-held nodes)."""
        if self.pending and (not self._in_order or self.pending[0][0] <= t):
            still = [p for p in self.pending if p[0] > t]
            self.ready += len(self.pending) - len(still)
            self.pending = still
        held = 0
        if self.free_nodes:
            held = self._age_nodes(t)
        return self.ready, self.ready + len(self.pending) + held

    def _remove(self, t: int) -> None:
        if self.pending:
            _, node = self.pending.pop()
            self._free_node(max(node, t), t)
        else:
            self.ready -= 1
            self._free_node(t, t)

    def _free_node(self, available: int, t: int) -> None:
        if self.node_minutes > 0:
            self.free_nodes.append([available, t + NODE_IDLE_SECONDS / MINUTE])

    def _take_node(self, t: int) -> int:
        if self.node_minutes == 0:
            return t
        if not self.free_nodes:
            return t + self.node_minutes
        best = min(range(len(self.free_nodes)), key=lambda i: self.free_nodes[i][0])
        return int(self.free_nodes.pop(best)[0])

    def _age_nodes(self, t: int) -> int:
        """Balloons hold the earliest-available free nodes; other free nodes expire when idle."""
        self.free_nodes.sort(key=lambda node: node[0])
        for i, node in enumerate(self.free_nodes):
            if i < self.balloons:
                node[1] = t + NODE_IDLE_SECONDS / MINUTE
        self.free_nodes = [n for n in self.free_nodes if n[1] > t]
        return min(self.balloons, len(self.free_nodes))

    def _cold_minutes(self) -> int:
        if self._fixed is not None:
            return self._fixed
        lo, hi = self.spec.cold_start_s
        return _minutes(float(self.rng.uniform(lo, hi)))


def on_time_share(arrivals: Sequence[float] | FloatArray, late: Sequence[float] | FloatArray, *,
                  stop: int, window: int) -> tuple[float | None, float]:
    """(on-time share, requests) of minutes ``[stop - window, stop)``; the share is None when no
    request arrived there. What vLLM's queue-time histogram would show the scaler over its window:
    ``slo_on_time_ratio`` and ``slo_requests``. Before any minute: (None, NaN), nothing read yet
    (0 requests would be an idle window)."""
    if stop <= 0:
        return None, math.nan
    start = max(0, stop - window)
    arrived = float(np.sum(arrivals[start:stop]))
    return (1.0 - float(np.sum(late[start:stop])) / arrived if arrived > 0 else None), arrived


def _minutes(seconds: float) -> int:
    """Whole minutes a duration occupies at 1-minute steps (8.5 min serves from minute 9)."""
    return max(0, math.ceil(seconds / MINUTE - _EPSILON))


@dataclass(frozen=True)
class RunResult:
    """Per-minute outcome of one policy run over the whole trace."""

    replicas: IntArray
    """Deployment replicas after the decision of each minute (ordered, ready or not)."""
    ready: IntArray
    billed: IntArray
    """Billed replicas per minute (+ balloon-held GPU nodes, in replicas)."""
    late: FloatArray
    queue: FloatArray

    def attainment(self, arrivals: FloatArray, window: slice) -> float:
        """1 - late / arrivals over ``window`` (1 when nothing arrived)."""
        total = float(arrivals[window].sum())
        return 1.0 - float(self.late[window].sum()) / total if total > 0 else 1.0

    def gpu_hours(self, gpus_per_replica: int, window: slice) -> float:
        return float(self.billed[window].sum()) * gpus_per_replica / 60.0


def simulate(scenario: Scenario, controller: Controller, cluster: ClusterSpec,
             control: ControlSpec) -> RunResult:
    """Run one policy closed-loop over the whole trace (every decision sees only the past)."""
    n, c = scenario.minutes, scenario.capacity
    arrivals = scenario.arrivals.tolist()
    observed = scenario.observed.tolist()
    # Per-minute results go to lists, made arrays at the end: a long trace is millions of steps.
    out_replicas: list[int] = []
    out_ready: list[int] = []
    out_billed: list[int] = []
    late: list[float] = []
    queue: list[float] = []
    hpa, every = Hpa(control), control.every_minutes
    pool = Cluster(cluster, ready=control.min_replicas)
    q = a_prev = late_prev = 0.0
    seen_prev = True
    for t in range(n):
        if t % every == 0:
            current = pool.count
            view = View(t, scenario.start + t * MINUTE, a_prev, q, seen_prev, current, late_prev)
            metric = controller.metric(view)
            pool.scale_to(hpa.apply(metric, current, view.now), t)
            pool.set_balloons(metric.prewarm, t)
        ready, billed = pool.tick(t)
        a = arrivals[t]
        served = c * ready
        late_prev = max(0.0, a - max(0.0, served - q))
        q = max(0.0, q + a - served)
        late.append(late_prev)
        queue.append(q)
        out_replicas.append(pool.count)
        out_ready.append(ready)
        out_billed.append(billed)
        a_prev, seen_prev = a, observed[t]
    return RunResult(np.asarray(out_replicas, dtype=np.int64), np.asarray(out_ready, dtype=np.int64),
                     np.asarray(out_billed, dtype=np.int64), np.asarray(late, dtype=np.float64),
                     np.asarray(queue, dtype=np.float64))
