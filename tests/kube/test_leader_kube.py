"""Leader election on a real coordination.k8s.io Lease, with the daemon's RBAC.

* Deterministic: two electors on one FakeClock, stepped by hand (no sleeps): one leader, the
  other follows, the leader "dies" (stops renewing), the follower takes over within the lease
  duration - and never while the old leader still believes it leads.
* The race: a write with a stale resourceVersion gets 409 and leaves the writer a follower.
* Real processes: two daemon replicas, SIGKILL the leader, the other takes over within the lease
  duration (+ one retry period); their "I lead" ticks never overlap in wall-clock time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaler.core.clock import FakeClock
from scaler.edges.kubernetes.api import Api, Obj
from scaler.edges.kubernetes.leader import LeaderElector, LeaseRecord
from tests.kube.common import raw_config
from tests.support.kubeenv import KubeEnv

pytestmark = [pytest.mark.kube, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LEASE = "/apis/coordination.k8s.io/v1/namespaces/prewarm/leases/prewarm-leader"
DURATION, RENEW = 2.0, 0.5


def elector(api: Api, clock: FakeClock, identity: str) -> LeaderElector:
    return LeaderElector(clock, api, namespace="prewarm", name="prewarm-leader",
                         lease_duration_seconds=DURATION, renew_period_seconds=RENEW, identity=identity)


def test_takeover_within_the_lease_duration_and_never_two_leaders(kube: KubeEnv, admin: Api) -> None:
    clock = FakeClock(1_800_000_000.0)
    a, b = elector(kube.daemon(), clock, "a"), elector(kube.daemon(), clock, "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    for _ in range(10):  # 5 s of normal life: a renews, b observes a fresh record each time
        clock.step(RENEW)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        assert not b.is_leader()

    killed_at = clock.now()  # a dies: it neither renews nor releases
    a_last, b_first = None, None
    while b_first is None:
        clock.step(0.1)
        if b.try_acquire_or_renew():
            b_first = clock.now()
        if a.is_leader():
            a_last = clock.now()
        assert not (a.is_leader() and b.is_leader()), "two leaders at once"
        assert clock.now() - killed_at < 2 * DURATION
    assert a_last is not None and a_last < killed_at + a.renew_deadline <= b_first
    assert b_first - killed_at <= DURATION + 0.1 + 1e-6
    record = LeaseRecord.of(admin.get(LEASE))
    assert (record.holder, record.transitions) == ("b", 1)

    # a comes back (a long GC pause, say): it finds b's lease and stays a follower.
    assert not a.try_acquire_or_renew()
    assert not a.is_leader() and b.is_leader()


def test_a_stale_write_gets_409_and_stays_a_follower(kube: KubeEnv) -> None:
    clock = FakeClock(1_800_000_000.0)
    a, b = elector(kube.daemon(), clock, "a"), elector(kube.daemon(), clock, "b")
    assert a.try_acquire_or_renew()
    stale = b.api.get(b.path)  # b read the Lease ...
    clock.step(RENEW)
    assert a.try_acquire_or_renew()  # ... a renewed in between ...
    clock.step(DURATION * 2)
    assert not b._write(stale, LeaseRecord.of(stale), clock.now())  # ... b's PUT is stale: 409
    assert not b.is_leader() and b.errors_total == 0


def test_release_hands_over_at_once(kube: KubeEnv) -> None:
    clock = FakeClock(1_800_000_000.0)
    a, b = elector(kube.daemon(), clock, "a"), elector(kube.daemon(), clock, "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert a.release() and not a.is_leader()
    assert b.try_acquire_or_renew()  # no waiting out the lease duration


def _start(kube: KubeEnv, identity: str, log: Path) -> subprocess.Popen[str]:
    config = json.dumps(raw_config())
    with log.open("w") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tests.kube.daemon", config, str(kube.daemon_kubeconfig), identity],
            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, text=True)


def _lines(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_two_daemons_kill_the_leader_the_other_takes_over(
    kube: KubeEnv, admin: Api, balloon: Obj, tmp_path: Path
) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("one", "two")}
    procs = {name: _start(kube, name, logs[name]) for name in logs}
    try:
        def holder() -> str:
            try:
                return LeaseRecord.of(admin.get(LEASE)).holder
            except Exception:
                return ""
        _wait(lambda: holder() in procs, 30, "a leader")
        time.sleep(1.0)  # a second of both running: the follower must stay a follower
        leader = holder()
        follower = next(n for n in procs if n != leader)
        killed_at = time.time()
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait(10)
        _wait(lambda: holder() == follower, DURATION + 5, "takeover")
        _wait(lambda: any(x.get("change") is True for x in _lines(logs[follower])), 5, "follower leads")
        taken = min(float(x["t"]) for x in _lines(logs[follower]) if x.get("change") is True)  # type: ignore[arg-type]
        # The follower sees the last renewal at its next poll (<= 1 jittered retry period after
        # it), waits the lease duration from then, and notices at the next poll: lease + 2 retries.
        assert taken - killed_at <= DURATION + 2 * RENEW * 1.2 + 0.5, f"takeover took {taken - killed_at:.2f}s"

        # Never two leaders: every tick of the new leader comes after the old leader's last one.
        old_ticks = [float(x["t"]) for x in _lines(logs[leader]) if x.get("leader")]  # type: ignore[arg-type]
        new_ticks = [float(x["t"]) for x in _lines(logs[follower]) if x.get("leader")]  # type: ignore[arg-type]
        assert old_ticks and new_ticks
        assert max(old_ticks) < min(new_ticks)
        # The balloons were actuated by whoever led: 2 pods pre-warmed.
        scale = admin.get("/apis/apps/v1/namespaces/prewarm/deployments/prewarm-balloon-gpu-h100/scale")
        assert scale["spec"]["replicas"] == 2

        # SIGTERM: graceful shutdown releases the Lease (no one waits out the duration).
        procs[follower].send_signal(signal.SIGTERM)
        assert procs[follower].wait(15) == 0
        assert holder() == ""
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
