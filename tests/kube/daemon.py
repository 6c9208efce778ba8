"""A daemon replica for the leader-election tests: ``build_kubernetes`` + its tasks + an actuation loop.

    python -m tests.kube.daemon CONFIG_JSON KUBECONFIG IDENTITY

Runs what the app runs for Kubernetes (the parts' tasks) and calls the balloon actuator every
0.1 s, as the engine does on every refresh, with a fixed forecast. Prints one JSON line per tick
while it believes it leads (``{"id", "t", "leader": true}``) and one per change, so the test can
check that no two replicas ever lead at the same wall-clock time. SIGTERM: graceful (the Lease is
released); SIGKILL: a crash (the Lease runs out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time

from scaler.core.clock import SystemClock
from scaler.core.config import parse_settings
from scaler.core.model import Decision, Reason
from scaler.edges.kubernetes.edge import build_kubernetes

TICK_SECONDS = 0.1


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(config_json: str, kubeconfig: str, identity: str) -> None:
    settings = parse_settings(json.loads(config_json)).settings
    parts = build_kubernetes(settings, clock=SystemClock(), kubeconfig=kubeconfig,
                             on_settings=lambda parsed: None, identity=identity)
    tasks = [asyncio.create_task(t(), name=t.__name__) for t in parts.tasks()]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    decisions = {"llama": Decision(model="llama", at=0.0, replicas=1, reason=Reason.FORECAST, valid=True,
                                   active=True, prewarm_replicas=2)}
    emit(id=identity, t=time.time(), started=True)
    leading = False
    while not stop.is_set():
        now = time.time()
        if parts.is_leader():
            emit(id=identity, t=now, leader=True)
            await parts.balloons.actuate(settings, decisions, now=now)
        if parts.is_leader() != leading:
            leading = parts.is_leader()
            emit(id=identity, t=time.time(), change=leading)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await parts.aclose()
    emit(id=identity, t=time.time(), stopped=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
